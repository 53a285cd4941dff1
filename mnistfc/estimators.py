"""Best-of-N from one pool of M trials, exactly: pure functions of arrays, no IO.

A random search of budget N keeps the trial with the best validation accuracy among N
draws. From one pool of M >= N finished trials, each quantity below is the exact average
over all C(M, N) subsets of size N (drawn without replacement), an unbiased estimate of
the same quantity for N fresh draws from the search space:

- ``expected_max``: the expected best validation accuracy (Dodge et al. 2019, "Show Your
  Work", the unbiased form); ``expected_max_with_replacement`` is their simpler form,
  biased low, kept as a column for comparison.
- ``max_spread``: the standard deviation of that best across searches of size N, which
  the exercise's error bars (std over its 3 repeats) estimate. From one pool it shrinks to
  0 as N approaches M, so ``spread_estimable`` limits where it may be shown.
- ``selected_test``: the expected test accuracy, and its spread, of the trial a search
  selects on validation; trials tied on validation are averaged (the rule used everywhere).
- ``band``: a 95% interval for ``expected_max`` itself (jackknife normal interval), shown
  where ``band_estimable``.

Sorted ascending v(1) <= ... <= v(M), the best of a random N-subset is v(i) with
probability C(i-1, N-1) / C(M, N); with tied values each value's probability is the sum
over its positions, so the order among ties never matters.
"""

from __future__ import annotations

import math

import numpy as np

# How far a pool of M can speak for searches of size N: tests/test_estimators.py simulates
# pools from known distributions and checks the spread's bias (within 20%) and the band's
# coverage (at least 90% at nominal 95%) wherever these allow them.
SPREAD_FRACTION = 0.25  # the spread is within 20% of the truth up to N = M/4
BAND_FRACTION = 0.125  # the band covers at least 90% up to N = M/8
MIN_BAND_BUDGET = 5  # below, a heavy lower tail (diverging draws) makes the band undercover
Z_95 = 1.959963984540054


def spread_estimable(n: int, m: int) -> bool:
    """Return whether a pool of ``m`` estimates the spread of the best of ``n`` (N <= M/4)."""
    return 1 <= n <= SPREAD_FRACTION * m


def band_estimable(n: int, m: int) -> bool:
    """Return whether the band of ``expected_max`` covers honestly (5 <= N <= M/8)."""
    return MIN_BAND_BUDGET <= n <= BAND_FRACTION * m


def max_weights(m: int, n: int) -> np.ndarray:
    """Return P(the best of a random n-subset is the i-th smallest of m), i = 1..m."""
    if not 1 <= n <= m:
        raise ValueError(f"budget {n} needs a pool of at least {n}, got {m}")
    log_fact = _log_factorials(m)
    i = np.arange(n, m + 1)
    log_w = _log_comb(log_fact, i - 1, n - 1) - _log_comb(log_fact, np.array(m), n)
    weights = np.zeros(m)
    weights[n - 1 :] = np.exp(log_w)
    return weights


def expected_max(values: np.ndarray, n: int) -> float:
    """Return the expected best of a random n-subset of ``values`` (unbiased)."""
    v = np.sort(np.asarray(values, dtype=float))
    return float(max_weights(len(v), n) @ v)


def expected_max_with_replacement(values: np.ndarray, n: int) -> float:
    """Return the expected best of n draws with replacement (Dodge et al.; biased low)."""
    v = np.sort(np.asarray(values, dtype=float))
    i = np.arange(1, len(v) + 1, dtype=float)
    weights = (i / len(v)) ** n - ((i - 1) / len(v)) ** n
    return float(weights @ v)


def max_spread(values: np.ndarray, n: int) -> float:
    """Return the standard deviation of the best of a random n-subset of ``values``."""
    v = np.sort(np.asarray(values, dtype=float))
    w = max_weights(len(v), n)
    mean = w @ v
    return math.sqrt(max(0.0, float(w @ (v - mean) ** 2)))


def selected_test(valid: np.ndarray, test: np.ndarray, n: int) -> tuple[float, float]:
    """Return the mean and standard deviation, over random n-subsets, of the test accuracy
    of the subset's best trial by validation (ties on validation: their test averaged)."""
    valid, test = np.asarray(valid, dtype=float), np.asarray(test, dtype=float)
    m = len(valid)
    log_fact = _log_factorials(m)
    log_total = _log_comb(log_fact, np.array(m), n)
    mean_t = mean_t2 = 0.0
    below = 0  # trials with a lower validation accuracy than the current group
    for value in np.unique(valid):
        group = test[valid == value]
        g = len(group)
        mu, var = float(group.mean()), float(group.var())
        for j in range(1, min(g, n) + 1):  # j members of the best group in the subset
            if n - j > below:
                continue
            p = math.exp(
                _log_comb(log_fact, np.array(g), j)
                + _log_comb(log_fact, np.array(below), n - j)
                - log_total
            )
            # The mean of j of the group's g values drawn without replacement.
            extra = var * (g - j) / (j * (g - 1)) if g > 1 else 0.0
            mean_t += p * mu
            mean_t2 += p * (mu * mu + extra)
        below += g
    return mean_t, math.sqrt(max(0.0, mean_t2 - mean_t * mean_t))


def select_on_test(test: np.ndarray, n: int) -> float:
    """Return the expected best *test* accuracy of a random n-subset: what selecting on the
    test set (the exercise's rule) reports, optimistic by construction."""
    return expected_max(test, n)


def band(values: np.ndarray, n: int) -> tuple[float, float]:
    """Return a 95% interval for ``expected_max(values, n)`` of the distribution sampled.

    The estimate is a U-statistic; its standard error is the jackknife's (leave one trial
    out, exact in closed form), and the interval is normal. Meaningful only where
    ``band_estimable(n, len(values))``.
    """
    v = np.sort(np.asarray(values, dtype=float))
    m = len(v)
    estimate = max_weights(m, n) @ v
    w = max_weights(m - 1, n)
    # Leaving out the k-th smallest shifts every larger value down one rank.
    prefix = np.concatenate([[0.0], np.cumsum(w * v[:-1])])  # sum over ranks < k
    suffix = np.concatenate([np.cumsum((w * v[1:])[::-1])[::-1], [0.0]])  # ranks >= k
    loo = prefix + suffix
    se = math.sqrt((m - 1) / m * float(np.sum((loo - loo.mean()) ** 2)))
    return float(estimate - Z_95 * se), float(estimate + Z_95 * se)


def _log_factorials(m: int) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, m + 1, dtype=float)))])


def _log_comb(log_fact: np.ndarray, a: np.ndarray, b: int) -> np.ndarray:
    a = np.asarray(a)
    return log_fact[a] - log_fact[b] - log_fact[a - b]
