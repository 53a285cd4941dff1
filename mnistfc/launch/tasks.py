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
from mnistfc.trial.packs import Pack, Task
from mnistfc.trial.search import PlannedTrial, chunk


def reusable_packs(
    todo: Sequence[PlannedTrial], recorded: Sequence[Pack]
) -> tuple[list[Pack], list[PlannedTrial]]:
    """Split the trials to run into recorded packs to resume whole, and the rest."""
    unfinished = {t.trial_id for t in todo}
    taken: set[str] = set()
    packs = []
    for pack in recorded:
        if all(i in unfinished and i not in taken for i in pack.trial_ids):
            packs.append(pack)
            taken.update(pack.trial_ids)
    return packs, [t for t in todo if t.trial_id not in taken]


def per_pack(
    reused: list[Pack], new: list[PlannedTrial], *, size: int, packed: bool, pack_mb: float
) -> list[Task]:  # fmt: skip
    """One task per pack (``size`` 0), or tasks of ``size`` trials, each packed within."""
    if not packed:  # Keras: one trial per pack
        return [Task(tuple(Pack((t,)) for t in c)) for c in chunk(new, max(size, 1))]
    ordered = sorted(new, key=lambda t: pack_key(t.config))
    if size:
        fresh = [Task(_packs(c, pack_mb)) for c in chunk(ordered, size)]
    else:
        fresh = [Task((p,)) for p in _packs(ordered, pack_mb)]
    return [Task((p,)) for p in reused] + fresh


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
    # Units to balance: each recorded pack whole, each new trial alone (packed per lane).
    units = [*reused, *(Pack((t,)) for t in sorted(new, key=lambda t: pack_key(t.config)))]
    whole = set(reused)
    tasks = []
    for lane in balance(units, lanes, lambda p: sum(trial_cost(c) for c in p.configs)):
        fresh = [p.trials[0] for p in lane if p not in whole]
        tasks.append(Task((*(p for p in lane if p in whole), *_packs(fresh, pack_mb))))
    return tasks


def _packs(trials: list[PlannedTrial], pack_mb: float) -> tuple[Pack, ...]:
    return tuple(Pack(tuple(p)) for p in plan_packs(trials, pack_mb, lambda t: t.config))
