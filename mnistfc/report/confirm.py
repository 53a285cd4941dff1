"""The study's winners retrained on new seeds: is the best configuration better, or lucky?

A search ranks trials by validation accuracy, and each trial is one seed: its
initialisation, its batch order and its dropout masks. The top of that ranking is partly
luck. The confirm stage retrains the top ``top`` configurations of the grid and of the
random search with ``seeds`` new seeds each, then reads their test accuracy: the seed
spread of one configuration, and whether the winner beats its runners-up on test data none
of them was selected on (an exact permutation test over the new seeds).

This module reads the stage back into its table; ``mnistfc.study.confirm`` chooses the
candidates from the searches' shards each time and plans the stage, so the plan, the table
and every number in it trace back to the sweeps' shards and the confirm folder's.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mnistfc.folder.schema import ROW_CONFIG_ORDER
from mnistfc.folder.shards import shard_dir
from mnistfc.folder.study_record import CONFIRM_PART
from mnistfc.report.aggregate import Results, load_results
from mnistfc.report.estimators import permutation_p_value
from mnistfc.report.frame import ranked, scores

SOURCES = ("grid", "random")
SETTINGS = ("units", "dropout", "activation", "learning_rate", "batch_size")


def load_parts(root: str | os.PathLike[str], parts: Iterable[str]) -> dict[str, Results]:
    """Read each part's shards once (parts without shards are left out)."""
    return {p: load_results(Path(root) / p) for p in parts if shard_dir(Path(root) / p).is_dir()}


def confirm_table(parts: Mapping[str, Results]) -> pd.DataFrame | None:
    """Return one row per retrained configuration and search that ranked it: its rank and
    scores there, and over its new seeds the mean and sd (ddof=1) of validation and test
    accuracy, the search winner's lead on test and its exact permutation p-value.

    ``parts`` are the study's folders as read (``load_parts``). The confirm folder's plan
    says which configurations were retrained; their ranks come from the searches' shards.
    None when the confirm folder has no plan or no results yet.
    """
    confirmed = parts.get(CONFIRM_PART)
    if confirmed is None or confirmed.plan is None or confirmed.frame.empty:
        return None
    groups: dict[tuple[Any, ...], list[str]] = {}
    for trial in confirmed.plan.spec.trials:
        groups.setdefault(_settings_key(dataclasses.asdict(trial)), []).append(trial.trial_id)
    drawn = scores(confirmed.frame)
    rows = []
    for source in (s for s in SOURCES if s in parts):
        seen: set[tuple[Any, ...]] = set()
        winner: np.ndarray | None = None
        for rank, row in enumerate(records(ranked(parts[source].frame)), 1):
            key = _settings_key(row)
            if key not in groups or key in seen:
                continue
            seen.add(key)
            done = drawn.loc[drawn.index.intersection(groups[key])]
            tests = done["test"].to_numpy()
            lead, p_value = math.nan, math.nan
            if winner is None:
                winner = tests
            else:
                lead = float(np.mean(winner) - np.mean(tests))
                p_value = permutation_p_value(winner, tests)
            rows.append({
                "source": source, "rank": rank, "trial_id": row["trial_id"],
                **{k: row[k] for k in SETTINGS},
                "search_valid": row["valid_accuracy"], "search_test": row["test_accuracy"],
                "seeds": len(done), "valid_mean": done["valid"].mean(),
                "valid_sd": _sd(done["valid"]), "test_mean": done["test"].mean(),
                "test_sd": _sd(done["test"]), "winner_lead": lead, "p_value": p_value,
            })  # fmt: skip
            if len(seen) == len(groups):
                break
    return pd.DataFrame(rows) if rows else None


def seed_sd(table: pd.DataFrame, split: str = "test") -> float:
    """Return the seed-to-seed sd of one configuration's accuracy, pooled over candidates
    (root mean of their variances; each configuration once). NaN: no candidate has 2 seeds."""
    rows = table[table["seeds"] >= 2].drop_duplicates(subset=list(SETTINGS))
    variances = rows[f"{split}_sd"] ** 2
    return float(np.sqrt(variances.mean())) if len(variances) else math.nan


def cost_share(parts: Mapping[str, Results]) -> tuple[float, float]:
    """Return the confirm stage's trial seconds and the whole study's (every part read: each
    trial's share of its pack, as results.csv's ``total_s``)."""
    seconds = {
        name: float(pd.to_numeric(results.frame["total_s"], errors="coerce").sum())
        for name, results in parts.items()
        if "total_s" in results.frame
    }
    return seconds.get(CONFIRM_PART, 0.0), sum(seconds.values())


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Return a table's rows as dicts (typed: pandas' own row types say little)."""
    rows: Any = table.to_dict("records")
    return list(rows)


def _settings_key(settings: dict[str, Any]) -> tuple[Any, ...]:
    """A configuration's settings without its seed: what the retrained trials share."""
    return tuple(settings[k] for k in ROW_CONFIG_ORDER if k != "seed")


def _sd(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) >= 2 else math.nan
