"""The whole study in one command, and a report whose numbers are recomputed from the shards."""

from __future__ import annotations

import csv
import itertools
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import mnistfc
from mnistfc.cli import main as cli

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def study_args(
    results: Path, data: Path, *, valid_size: int, batch_size: int = 64, extra_grid: str = ""
) -> list[str]:
    common = f'"base.epochs=1","base.valid_size={valid_size}","base.batch_size={batch_size}"'
    return [
        "study", str(JOBS / "study.toml"), "--results", str(results), "--data-dir", str(data),
        "--executor", "debug",
        "--set", "train.epochs=1", "--set", f"train.valid_size={valid_size}",
        "--set", f'grid.set=[{common},"grid.units=[16,32]","grid.dropout=[0.0,0.5]"{extra_grid}]',
        "--set", f'grid_stratified.set=[{common},"grid.units=[16,32]","grid.dropout=[0.0,0.5]",'
                 "'base.valid_split=\"stratified\"']",
        "--set", f'random.set=["protocol=pool","pool_size=6","budgets=[1,2,6]",{common},'
                 '"space.batch_size=[64,128]"]',
        "--set", "confirm.top=2", "--set", "confirm.seeds=2",
    ]  # fmt: skip


def test_study_runs_every_part_and_writes_one_report(tmp_path: Path, npz_dir: Path, capsys) -> None:
    results = tmp_path / "study"
    assert cli.main(study_args(results, npz_dir, valid_size=28)) == 0
    out = capsys.readouterr().out
    assert "report: " in out and "| Validation |" in out
    parts = (("train", 1), ("grid", 4), ("grid_stratified", 4), ("random", 6), ("confirm", 8))
    for part, count in parts:
        assert len(list((results / part / "shards").glob("*.json"))) == count, part
    html = (results / "report.html").read_text()
    headings = ("Single model", "grid: Grid: dropout x units", "random: Random search",
                "grid_stratified: Grid", "The split shift, measured with networks",
                "The winners, retrained on new seeds")  # fmt: skip
    for heading in headings:
        assert heading in html
    assert html.count("data:image/png;base64,") >= 7
    stratified = _shards(results / "grid_stratified")
    assert {s["config"]["valid_split"] for s in stratified} == {"stratified"}
    _check_confirm(results)
    capsys.readouterr()
    assert cli.main(["status", str(results)]) == 0  # a study folder: every part at once
    status = capsys.readouterr().out
    assert f"study {results}: single model completed" in status
    assert "sweep grid: 4 trials: 4 completed" in status and "sweep random: 6 trials" in status
    assert f"report: {results / 'report.html'}" in status
    counts = {name: part.counts for name, part in mnistfc.status(results).items()}
    assert counts == {"confirm": {"completed": 8}, "grid": {"completed": 4},
                      "grid_stratified": {"completed": 4}, "random": {"completed": 6}}  # fmt: skip
    # run again: everything resumes, nothing is retrained
    mtimes = {p: p.stat().st_mtime_ns for p in results.rglob("shards/*.json")}
    assert cli.main(study_args(results, npz_dir, valid_size=28)) == 0
    assert {p: p.stat().st_mtime_ns for p in results.rglob("shards/*.json")} == mtimes
    # other [confirm] settings than the folder was confirmed with: one clear error, no training
    capsys.readouterr()
    assert cli.main([*study_args(results, npz_dir, valid_size=28), "--set", "confirm.seeds=3"]) == 2
    err = capsys.readouterr().err
    assert "retrained other configurations than the searches' top 2 on 3 seeds" in err
    assert f"remove {results / 'confirm'}" in err
    assert {p: p.stat().st_mtime_ns for p in results.rglob("shards/*.json")} == mtimes


def test_a_bad_study_file_stops_before_training(tmp_path: Path, npz_dir: Path, capsys) -> None:
    args = study_args(tmp_path / "s", npz_dir, valid_size=28, extra_grid=',"grid.units=[0]"')
    assert cli.main([*args, "--set", "train.units=-1"]) == 2
    err = capsys.readouterr().err
    assert "train: invalid trial config: units" in err and "grid:" in err
    assert not (tmp_path / "s").exists()
    assert cli.main([*args[:-4], "--set", "confirm.seeds=1", "--set", "confirm.top=true"]) == 2
    err = capsys.readouterr().err
    assert "confirm.seeds: must be an integer from 2 to 10, got 1" in err
    assert "confirm.top: must be an integer from 0 (no confirm stage) to 20, got True" in err


def _check_confirm(results: Path) -> None:
    """The confirm stage retrained each search's top 2 by validation on 2 new seeds, and its
    table's numbers are the new shards' (recomputed here by hand)."""
    confirmed = _shards(results / "confirm")
    with open(results / "confirm" / "report" / "confirm.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and [r["source"] for r in rows] == ["grid"] * 2 + ["random"] * 2
    for source in ("grid", "random"):
        ranked = sorted(
            _shards(results / source),
            key=lambda s: (-s["metrics"]["valid"]["accuracy"], s["trial_id"]),
        )
        mine = [r for r in rows if r["source"] == source]
        for row, trial in zip(mine, ranked[:2], strict=True):
            assert row["trial_id"] == trial["trial_id"]
            same = {k: v for k, v in trial["config"].items() if k != "seed"}
            seeds = [s for s in confirmed
                     if {k: v for k, v in s["config"].items() if k != "seed"} == same]  # fmt: skip
            assert len(seeds) == 2 and trial["config"]["seed"] not in {
                s["config"]["seed"] for s in seeds}  # fmt: skip
            tests = [s["metrics"]["test"]["accuracy"] for s in seeds]
            assert float(row["test_mean"]) == pytest.approx(np.mean(tests), abs=1e-12)
            assert float(row["test_sd"]) == pytest.approx(np.std(tests, ddof=1), abs=1e-12)
        # 2 seeds against 2: 6 splits, so the exact p-value is 1/3, 2/3 or 1
        assert mine[0]["winner_lead"] == "" and round(3 * float(mine[1]["p_value"])) in (1, 2, 3)
    md = (results / "report.md").read_text()
    assert "The winners, retrained on new seeds" in md and "Seed noise: " in md
    assert "The differences the study's conclusions rest on" in md and "Cost: " in md


def _shards(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "shards").glob("*.json"))]


@pytest.mark.slow
def test_report_numbers_recomputed_from_real_data_shards(
    tmp_path: Path, real_mnist_dir: Path
) -> None:
    results = tmp_path / "study"
    args = study_args(results, real_mnist_dir, valid_size=2000, batch_size=1000)
    args += ["--set", "train.batch_size=1000", "--set", "train.units=32"]
    assert cli.main(args) == 0
    grid_md = (results / "grid" / "report" / "report.md").read_text()
    grid = _shards(results / "grid")
    for shard in grid:
        c, m = shard["config"], shard["metrics"]
        valid, test = m["valid"]["accuracy"], m["test"]["accuracy"]
        line = (
            f"dropout = {c['dropout']:.2f}, {c['units']} neurons -> accuracy {valid:.3f}, "
            f"error rate = {100 - 100 * valid:.1f}% (validation); test accuracy {test:.3f}"
        )
        assert line in grid_md
        assert m["valid"]["accuracy"] > 0.8  # real data, one epoch
    best = max(grid, key=lambda s: (s["metrics"]["valid"]["accuracy"], -int(s["trial_id"], 16)))
    assert f"test {best['metrics']['test']['accuracy']:.4f} (trial {best['trial_id']})" in grid_md

    # budget.csv recomputed independently from the pool's shards (6 trials, budgets 1, 2, 6)
    pool = _shards(results / "random")
    pairs = sorted((s["metrics"]["valid"]["accuracy"], s["metrics"]["test"]["accuracy"])
                   for s in pool)  # fmt: skip
    valid = np.array([v for v, _ in pairs])
    with open(results / "random" / "report" / "budget.csv", newline="") as handle:
        rows = {int(r["budget"]): r for r in csv.DictReader(handle)}
    assert set(rows) == {1, 2, 6} and {r["pool"] for r in rows.values()} == {"6"}
    for n, row in rows.items():
        subsets = list(itertools.combinations(pairs, n))
        best = [max(v for v, _ in s) for s in subsets]
        chosen = [
            np.mean([t for v, t in s if v == top]) for s, top in zip(subsets, best, strict=True)
        ]
        assert float(row["valid_expected"]) == pytest.approx(np.mean(best), abs=1e-9)
        assert float(row["test_expected"]) == pytest.approx(np.mean(chosen), abs=1e-9)
        on_test = np.mean([max(t for _, t in s) for s in subsets])
        assert float(row["select_on_test"]) == pytest.approx(on_test, abs=1e-9)
        # A pool of 6 shows no spread and no interval (they need M >= 100 and N <= M/8).
        assert row["valid_std"] == row["test_std"] == row["valid_band_lo"] == ""
        # The exercise's rule: the best final-epoch test accuracy among N.
        last = [s["metrics"]["last"]["test"]["accuracy"] for s in pool]
        on_last = np.mean([max(s) for s in itertools.combinations(last, n)])
        assert float(row["exercise_expected"]) == pytest.approx(on_last, abs=1e-9)
    assert float(rows[1]["valid_expected"]) == pytest.approx(valid.mean(), abs=1e-9)
    assert float(rows[6]["valid_expected"]) == pytest.approx(valid.max(), abs=1e-9)
    m = len(valid)
    with_replacement = sum(v * ((i / m) ** 2 - ((i - 1) / m) ** 2) for i, v in enumerate(valid, 1))
    assert float(rows[2]["valid_expected_with_replacement"]) == pytest.approx(with_replacement)
    random_md = (results / "random" / "report" / "report.md").read_text()
    assert "No spread or interval for N = 1, 2, 6 from a pool of 6" in random_md
    assert "diverged" in random_md
    assert "The exercise's published table, recomputed from this pool" in random_md


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(tmp_path: Path, npz_dir: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    results = tmp_path / "study"
    assert cli.main(study_args(results, npz_dir, valid_size=28)) == 0
    shot = tmp_path / "report.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1200,3000", (results / "report.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (3000, 1200)
    # plots make a page far from blank: many distinct colours, not just text on white
    colours = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 500
