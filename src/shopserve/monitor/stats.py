"""Distribution comparisons for drift: population stability index, Kolmogorov–Smirnov and
chi-square two-sample tests, in numpy only (no scipy at serving time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EPS = 1e-4  # share given to an empty bin, so that PSI stays finite


@dataclass(frozen=True)
class TwoSampleResult:
    """One two-sample test: its name, statistic and p-value."""

    test: str
    statistic: float
    p_value: float


def psi(reference: np.ndarray, live: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(live, dtype=np.float64)
    if ref.sum() <= 0 or cur.sum() <= 0:
        return 0.0
    p = np.maximum(ref / ref.sum(), EPS)
    q = np.maximum(cur / cur.sum(), EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in the bins cut at ``edges`` (inner edges; open ends both sides)."""
    finite = values[np.isfinite(values)]
    idx = np.searchsorted(edges, finite, side="right")
    return np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> TwoSampleResult:
    """Two-sample Kolmogorov–Smirnov test with the asymptotic p-value (Stephens' correction)."""
    x = np.sort(np.asarray(a, dtype=np.float64)[np.isfinite(a)])
    y = np.sort(np.asarray(b, dtype=np.float64)[np.isfinite(b)])
    if len(x) == 0 or len(y) == 0:
        return TwoSampleResult("ks", 0.0, 1.0)
    grid = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, grid, side="right") / len(x)
    cdf_y = np.searchsorted(y, grid, side="right") / len(y)
    d = float(np.max(np.abs(cdf_x - cdf_y)))
    n = len(x) * len(y) / (len(x) + len(y))
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    return TwoSampleResult("ks", d, _kolmogorov_sf(lam))


def _kolmogorov_sf(lam: float) -> float:
    if lam < 1e-3:
        return 1.0
    total = sum(2 * (-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return float(min(max(total, 0.0), 1.0))


def chi_square_two_sample(reference: np.ndarray, live: np.ndarray) -> TwoSampleResult:
    """Chi-square test of homogeneity of two count vectors (bins empty in both are dropped).

    The p-value uses the regularized upper incomplete gamma function.
    """
    table = np.vstack([np.asarray(reference, np.float64), np.asarray(live, np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) <= 0).any():
        return TwoSampleResult("chi2", 0.0, 1.0)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return TwoSampleResult("chi2", stat, chi2_sf(stat, dof))


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for X ~ chi-square(dof)."""
    if x <= 0:
        return 1.0
    return _gamma_q(dof / 2.0, x / 2.0)


def _gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) (series below a+1, continued fraction above)."""
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        for _ in range(500):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-14:
                break
        return float(min(max(1.0 - total * math.exp(log_front), 0.0), 1.0))
    b, c, d = x + 1 - a, 1e300, 1.0 / (x + 1 - a)
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-14:
            break
    return float(min(max(math.exp(log_front) * h, 0.0), 1.0))
