"""Group a sweep's unfinished trials into tasks of packs, re-using recorded packs whole.

A pack that an earlier submission planned and whose trials are all still unfinished is kept
as it was: its checkpoint is named after its exact trial set, so only the same pack resumes
it. The other trials are packed afresh. Backends choose the policy: one task per pack
(SLURM) or one task per lane of about equal compute (local processes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mnistfc.engine.pack.planner import balance, pack_key, plan_packs, trial_cost
from mnistfc.trial.search import PlannedTrial, chunk

Pack = list[PlannedTrial]
Task = list[Pack]


def reusable_packs(
    todo: Sequence[PlannedTrial], recorded: Sequence[Sequence[str]]
) -> tuple[list[Pack], list[PlannedTrial]]:
    """Split the trials to run into recorded packs to resume whole, and the rest."""
    by_id = {t.trial_id: t for t in todo}
    taken: set[str] = set()
    packs = []
    for ids in recorded:
        if ids and all(i in by_id and i not in taken for i in ids):
            packs.append([by_id[i] for i in ids])
            taken.update(ids)
    return packs, [t for t in todo if t.trial_id not in taken]


def per_pack(
    reused: list[Pack], new: list[PlannedTrial], *, size: int, packed: bool, pack_mb: float
) -> list[Task]:  # fmt: skip
    """One task per pack (``size`` 0), or tasks of ``size`` trials, each packed within."""
    if not packed:
        return [[[t]] for t in new] if size <= 1 else [[[t] for t in c] for c in chunk(new, size)]
    ordered = sorted(new, key=lambda t: pack_key(t.config))
    if size:
        fresh = [_packs(c, pack_mb) for c in chunk(ordered, size)]
    else:
        fresh = [[p] for p in _packs(ordered, pack_mb)]
    return [[p] for p in reused] + fresh


def per_lane(
    reused: list[Pack],
    new: list[PlannedTrial],
    *,
    lanes: int,
    size: int,
    packed: bool,
    pack_mb: float,
) -> list[Task]:
    """Tasks of about equal compute, one per lane (or of ``size`` trials when given)."""
    if size or not packed:
        size = size or max(1, math.ceil(len(new) / lanes))
        return per_pack(reused, new, size=size, packed=packed, pack_mb=pack_mb)
    units: list[Pack] = reused + [[t] for t in sorted(new, key=lambda t: pack_key(t.config))]
    whole = {id(p) for p in reused}
    tasks = []
    for lane in balance(units, lanes, lambda u: sum(trial_cost(t.config) for t in u)):
        fresh = [u[0] for u in lane if id(u) not in whole]
        tasks.append([u for u in lane if id(u) in whole] + _packs(fresh, pack_mb))
    return tasks


def _packs(trials: list[PlannedTrial], pack_mb: float) -> list[Pack]:
    return plan_packs(trials, pack_mb, lambda t: t.config) if trials else []
