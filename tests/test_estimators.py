"""The best-of-N estimators: exact against brute force, honest against simulation.

The simulation draws pools of M trials from known accuracy distributions (including one
where a fifth of the draws are bad, as learning rates of 0.1 or 1e-5 make them), and checks
what the report claims wherever it shows a number: the band covers the true expected best
of N in at least 90% of pools (nominal 95%), and the spread is within 20% of the true
spread of the best of N. It prints its table for the CI log. Seeded: it cannot flake.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mnistfc import estimators as est

REPS = 800
POOLS = (50, 100, 200, 400)
BUDGETS = (1, 2, 3, 5, 10, 20, 25, 50, 100, 200)


def _accuracy(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x / 0.0005) * 0.0005, 0.0, 1.0)  # 2,000 validation images


DISTRIBUTIONS = {
    "normal": lambda rng, k: _accuracy(rng.normal(0.975, 0.006, k)),
    "bad fifth": lambda rng, k: _accuracy(
        np.where(rng.random(k) < 0.8, rng.normal(0.975, 0.005, k), rng.uniform(0.2, 0.95, k))
    ),
    "skewed": lambda rng, k: _accuracy(0.99 - rng.gamma(2.0, 0.005, k)),
    "uniform": lambda rng, k: _accuracy(rng.uniform(0.9, 0.99, k)),
}


def _truth(sample: np.ndarray, n: int) -> tuple[float, float]:
    """Mean and sd of the best of n i.i.d. draws from a (very large) sample's distribution."""
    v = np.sort(sample)
    i = np.arange(1, len(v) + 1)
    w = (i / len(v)) ** n - ((i - 1) / len(v)) ** n
    mean = float(w @ v)
    return mean, math.sqrt(float(w @ (v - mean) ** 2))


def test_the_estimators_equal_brute_force_over_every_subset() -> None:
    rng = np.random.default_rng(11)
    for _ in range(40):
        m = int(rng.integers(3, 9))
        n = int(rng.integers(1, m + 1))
        valid = np.round(rng.uniform(0.9, 1.0, m), 2)  # ties
        test = rng.uniform(0.8, 1.0, m)
        best, chosen, on_test = [], [], []
        for subset in map(list, itertools.combinations(range(m), n)):
            top = valid[subset].max()
            best.append(top)
            chosen.append(test[[i for i in subset if valid[i] == top]].mean())
            on_test.append(test[subset].max())
        assert est.expected_max(valid, n) == pytest.approx(np.mean(best), abs=1e-12)
        assert est.max_spread(valid, n) == pytest.approx(np.std(best), abs=1e-9)
        assert est.selected_test(valid, test, n) == pytest.approx(
            (np.mean(chosen), np.std(chosen)), abs=1e-9
        )
        assert est.select_on_test(test, n) == pytest.approx(np.mean(on_test), abs=1e-12)
        if n < m:  # the band's standard error is the jackknife's, leaving each trial out
            loo = [est.expected_max(np.delete(valid, k), n) for k in range(m)]
            se = math.sqrt((m - 1) / m * np.sum((np.array(loo) - np.mean(loo)) ** 2))
            low, high = est.band(valid, n)
            assert (high - low) / 2 == pytest.approx(est.Z_95 * se, abs=1e-9)


def test_with_replacement_is_biased_low_and_without_is_exact_at_n_equal_m() -> None:
    pool = np.array([0.90, 0.95, 0.97, 0.98])
    assert est.expected_max(pool, 4) == pytest.approx(0.98)
    assert est.expected_max_with_replacement(pool, 4) < 0.98
    assert est.max_spread(pool, 4) == 0.0  # one subset: a pool cannot show the spread at N=M


def test_band_coverage_and_spread_bias_hold_wherever_the_report_shows_them() -> None:
    rng = np.random.default_rng(2026)
    lines, failures = [], []
    for name, draw in DISTRIBUTIONS.items():
        big = draw(rng, 400_000)
        for m in POOLS:
            budgets = [n for n in BUDGETS if n <= m]
            truth = {n: _truth(big, n) for n in budgets}
            covered = dict.fromkeys(budgets, 0)
            spreads: dict[int, list[float]] = {n: [] for n in budgets}
            for _ in range(REPS):
                pool = draw(rng, m)
                for n in budgets:
                    spreads[n].append(est.max_spread(pool, n))
                    if est.band_estimable(n, m):
                        low, high = est.band(pool, n)
                        covered[n] += low <= truth[n][0] <= high
            cells = []
            for n in budgets:
                bias = np.mean(spreads[n]) / truth[n][1] - 1
                coverage = covered[n] / REPS
                shown = f"cov {coverage:.2f}" if est.band_estimable(n, m) else "no band"
                cells.append(f"N={n}: {shown}, bias {bias:+.2f}" + (
                    "" if est.spread_estimable(n, m) else " (hidden)"))  # fmt: skip
                if est.band_estimable(n, m) and coverage < 0.90:
                    failures.append(f"{name} M={m} N={n}: coverage {coverage:.3f}")
                if est.spread_estimable(n, m) and abs(bias) > 0.20:
                    failures.append(f"{name} M={m} N={n}: spread bias {bias:+.3f}")
            lines.append(f"{name:9s} M={m:3d}  " + "; ".join(cells))
    print("\nband coverage (nominal 95%) and spread bias, over", REPS, "pools each:")
    print("\n".join(lines))
    assert not failures, "\n".join(failures)


def test_the_limits_are_needed_a_pool_cannot_speak_for_searches_near_its_size() -> None:
    """At N = M the pool's spread is 0 and, at N = M/2, biased low by far more than 20%."""
    rng = np.random.default_rng(7)
    big = DISTRIBUTIONS["normal"](rng, 400_000)
    m = 200
    spread = np.mean([est.max_spread(DISTRIBUTIONS["normal"](rng, m), m // 2) for _ in range(200)])
    assert spread / _truth(big, m // 2)[1] - 1 < -0.3
    assert not est.spread_estimable(m // 2, m) and not est.band_estimable(2, m)
