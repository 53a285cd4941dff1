"""The study's winners retrained on new seeds: is the best configuration better, or lucky?

A search ranks trials by validation accuracy, and each trial is one seed: its
initialisation, its batch order and its dropout masks. The top of that ranking is partly
luck. The confirm stage retrains the top ``top`` configurations of the grid and of the
random search with ``seeds`` new seeds each, then reads their test accuracy: the seed
spread of one configuration, and whether the winner beats its runners-up on test data none
of them was selected on (an exact permutation test over the new seeds).

Candidates are recomputed from the shards each time, so the confirm plan, its table and
every number in it trace back to the sweeps' shards and the confirm folder's.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mnistfc.aggregate import load_results, scores, usable
from mnistfc.config import TrialConfig
from mnistfc.estimators import permutation_p_value
from mnistfc.plan import has_plan, load_plan
from mnistfc.records import final_result, shard_dir
from mnistfc.records.schema import ROW_CONFIG_ORDER
from mnistfc.spec import SweepSpec, list_spec

NAME = "confirm"
SOURCES = ("grid", "random")
SETTINGS = ("units", "dropout", "activation", "learning_rate", "batch_size")


@dataclass(frozen=True)
class Candidate:
    """A configuration a search ranked near its top, with the scores that put it there."""

    source: str
    rank: int
    trial_id: str
    config: TrialConfig
    valid: float
    test: float

    def retrained(self, seeds: int) -> list[TrialConfig]:
        """Return the configuration on ``seeds`` new seeds (1, 2, ..., skipping its own)."""
        new = [s for s in range(1, seeds + 2) if s != self.config.seed][:seeds]
        return [dataclasses.replace(self.config, seed=s) for s in new]


def candidates(root: str | os.PathLike[str], top: int) -> list[Candidate]:
    """Return each search's ``top`` trials by validation accuracy (ties: first by id)."""
    chosen = []
    for source in SOURCES:
        folder = Path(root) / source
        if not shard_dir(folder).is_dir():
            continue
        cells = usable(load_results(folder).frame).dropna(subset=["valid_accuracy"])
        ranked = cells.sort_values(["valid_accuracy", "trial_id"], ascending=[False, True])
        for rank, row in enumerate(records(ranked.head(top)), 1):
            result = final_result(folder, str(row["trial_id"]))
            if result is None:  # read a moment ago: only a concurrent delete gets here
                continue
            scored = float(row["valid_accuracy"]), float(row["test_accuracy"])
            chosen.append(Candidate(source, rank, result.trial_id, result.config, *scored))
    return chosen


def confirm_spec(chosen: list[Candidate], seeds: int) -> SweepSpec | None:
    """Return the confirm stage's sweep: every candidate on its new seeds (None: nothing)."""
    trials = [config for candidate in chosen for config in candidate.retrained(seeds)]
    return list_spec(NAME, trials) if trials else None


def confirm_table(root: str | os.PathLike[str]) -> pd.DataFrame | None:
    """Return one row per retrained configuration and search that ranked it: its rank and
    scores there, and over its new seeds the mean and sd (ddof=1) of validation and test
    accuracy, the search winner's lead on test and its exact permutation p-value.

    The confirm folder's plan says which configurations were retrained; their ranks are
    read from the searches' shards. None when the folder has no plan or no results yet.
    """
    folder = Path(root) / NAME
    if not has_plan(folder):
        return None
    groups: dict[tuple[Any, ...], list[str]] = {}
    for trial in load_plan(folder).spec.trials:
        groups.setdefault(_settings_key(dataclasses.asdict(trial)), []).append(trial.trial_id)
    drawn = scores(load_results(folder).frame)
    rows = []
    for source in SOURCES:
        if not shard_dir(Path(root) / source).is_dir():
            continue
        cells = usable(load_results(Path(root) / source).frame).dropna(subset=["valid_accuracy"])
        ranked = cells.sort_values(["valid_accuracy", "trial_id"], ascending=[False, True])
        seen: set[tuple[Any, ...]] = set()
        for rank, row in enumerate(records(ranked), 1):
            key = _settings_key(row)
            if key not in groups or key in seen:
                continue
            seen.add(key)
            done = drawn.loc[drawn.index.intersection(groups[key])]
            rows.append({
                "source": source, "rank": rank, "trial_id": row["trial_id"],
                **{k: row[k] for k in SETTINGS},
                "search_valid": row["valid_accuracy"], "search_test": row["test_accuracy"],
                "seeds": len(done), "valid_mean": done["valid"].mean(),
                "valid_sd": _sd(done["valid"]), "test_mean": done["test"].mean(),
                "test_sd": _sd(done["test"]), "tests": done["test"].to_numpy(),
            })  # fmt: skip
            if len(seen) == len(groups):
                break
    if not rows or not len(drawn):
        return None
    table = pd.DataFrame(rows)
    leads, p_values = [], []
    for row in records(table):
        same = table[table["source"] == row["source"]]
        winner, first = same.iloc[0]["tests"], row["rank"] == same["rank"].min()
        leads.append(math.nan if first else float(np.mean(winner) - np.mean(row["tests"])))
        p_values.append(math.nan if first else permutation_p_value(winner, row["tests"]))
    return table.drop(columns="tests").assign(winner_lead=leads, p_value=p_values)


def seed_sd(table: pd.DataFrame, split: str = "test") -> float:
    """Return the seed-to-seed sd of one configuration's accuracy, pooled over candidates
    (root mean of their variances; each configuration once). NaN: no candidate has 2 seeds."""
    rows = table[table["seeds"] >= 2].drop_duplicates(subset=list(SETTINGS))
    variances = rows[f"{split}_sd"] ** 2
    return float(np.sqrt(variances.mean())) if len(variances) else math.nan


def cost_share(root: str | os.PathLike[str], parts: list[str]) -> tuple[float, float]:
    """Return the confirm stage's trial seconds and the whole study's (every part's shards:
    each trial's share of its pack, as results.csv's ``total_s``)."""
    seconds = {}
    for part in {*parts, NAME, "train"}:
        folder = Path(root) / part
        if shard_dir(folder).is_dir():
            seconds[part] = float(pd.to_numeric(load_results(folder).frame.get(
                "total_s", pd.Series(dtype=float)), errors="coerce").sum())  # fmt: skip
    return seconds.get(NAME, 0.0), sum(seconds.values())


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Return a table's rows as dicts (typed: pandas' own row types say little)."""
    rows: Any = table.to_dict("records")
    return list(rows)


def _settings_key(settings: dict[str, Any]) -> tuple[Any, ...]:
    """A configuration's settings without its seed: what the retrained trials share."""
    return tuple(settings[k] for k in ROW_CONFIG_ORDER if k != "seed")


def _sd(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) >= 2 else math.nan
