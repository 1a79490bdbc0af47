"""Demo click rows in the Criteo shape whose labels depend on features and on their crosses.

Numeric ``I1..I13`` are skewed counts with missing values; ``C1..C26`` are hashed strings with
Zipf-distributed levels. As in a real shop, the click logit has main effects (I1, I3, I7 and
per-level effects of C1, C2, C5) *and* interactions (``_CROSSES``): user segment ``C5`` ×
product category ``C6``, category × device ``C20``, and position ``I2`` × price ``I5``.
A linear model sees only the main effects; a model with feature crosses can learn the rest.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from shopserve.data.tables import CLICK_CATEGORICAL, CLICK_NUMERIC, CLICKS_SCHEMA

_CARDINALITY = (40, 500, 2000, 300, 8, 12, 900, 60, 3, 1500, 700, 2500, 600, 20, 1200, 2500,
                10, 400, 150, 4, 2500, 15, 14, 900, 80, 600)
_INFORMATIVE_C = {0: 0.9, 1: 0.6, 4: 0.8}  # column index -> std of its per-level effect
# (column a, column b, scale): each level gets a small taste vector and a pair's effect is
# their dot product (a shopper segment likes some kinds of product, as real affinities are
# low-rank): segment C5 × category C6, category C6 × device C20, campaign C14 × placement C17.
_CROSSES = ((4, 5, 0.8), (5, 19, 0.5), (13, 16, 0.5))
_TASTE_DIMS = 2
_POSITION, _PRICE = 1, 4  # I2 (slot on the page) × I5 (price): cheap items win the top slots
_MISSING_I = {1: 0.0, 2: 0.2, 3: 0.2, 4: 0.0, 9: 0.45, 11: 0.75, 12: 0.2}


def _hashes(column: int, size: int) -> np.ndarray:
    """Stable 8-hex-digit level names, like Criteo's hashed categoricals."""
    names = [
        hashlib.blake2b(f"C{column}:{i}".encode(), digest_size=4).hexdigest()
        for i in range(size)
    ]
    return np.array(names, dtype=object)


def _levels(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1) ** 1.05
    return rng.choice(size, size=n, p=weights / weights.sum())


def _standard(values: np.ndarray) -> np.ndarray:
    logged = np.log1p(values)
    out: np.ndarray = (logged - logged.mean()) / (logged.std() + 1e-9)
    return out


def _click_logit(rng: np.random.Generator, numeric: np.ndarray,
                 levels: list[np.ndarray]) -> np.ndarray:
    """Main effects plus the crosses a shop's click log really holds."""
    n = len(numeric)
    logit = np.full(n, -1.9)
    logit += 0.55 * (np.log1p(numeric[:, 0]) - 1.5)
    logit -= 0.35 * (np.log1p(numeric[:, 2]) - 2.5)
    logit += 0.4 * (np.log1p(numeric[:, 6]) - 2.0)
    for i, std in _INFORMATIVE_C.items():
        logit += rng.normal(0.0, std, size=_CARDINALITY[i])[levels[i]]
    for a, b, scale in _CROSSES:
        taste_a = rng.normal(0.0, 1.0, size=(_CARDINALITY[a], _TASTE_DIMS))
        taste_b = rng.normal(0.0, 1.0, size=(_CARDINALITY[b], _TASTE_DIMS))
        logit += scale * (taste_a[levels[a]] * taste_b[levels[b]]).sum(axis=1)
    logit -= 0.6 * _standard(numeric[:, _POSITION]) * _standard(numeric[:, _PRICE])
    return logit


def generate_clicks(n: int, rng: np.random.Generator) -> pa.Table:
    """``n`` click rows (about one in five clicked) in the normalized clicks schema."""
    numeric = rng.lognormal(mean=1.0, sigma=1.2, size=(n, len(CLICK_NUMERIC)))
    numeric = np.floor(numeric * rng.uniform(0.5, 20.0, size=len(CLICK_NUMERIC)))
    levels = [_levels(rng, n, size) for size in _CARDINALITY]
    logit = _click_logit(rng, numeric, levels)
    logit += -1.6 - np.median(logit)  # about one click in five, as in Criteo
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    columns: dict[str, pa.Array] = {"label": pa.array(labels, type=pa.int64())}
    for j, name in enumerate(CLICK_NUMERIC):
        missing = rng.random(n) < _MISSING_I.get(j, 0.05)
        columns[name] = pa.array(numeric[:, j], type=pa.float64(), mask=missing)
    for i, name in enumerate(CLICK_CATEGORICAL):
        names = _hashes(i + 1, _CARDINALITY[i])[levels[i]]
        missing = rng.random(n) < (0.3 if i in (18, 19, 21, 24, 25) else 0.02)
        columns[name] = pa.array(names, type=pa.string(), mask=missing)
    return pa.table(columns, schema=CLICKS_SCHEMA)
