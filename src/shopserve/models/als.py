"""Implicit-feedback matrix factorisation by alternating least squares (Hu, Koren, Volinsky 2008).

Confidence ``1 + alpha * log1p(weight)``; each side is solved exactly, one small system per row.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class AlsSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    factors: int = Field(default=32, ge=1)
    iterations: int = Field(default=10, ge=1)
    reg: float = Field(default=1.0, gt=0)
    alpha: float = Field(default=10.0, gt=0)
    seed: int = 0


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(rows, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))])
    return indptr, cols[order], vals[order]


def _solve_side(
    other: np.ndarray, csr: tuple[np.ndarray, np.ndarray, np.ndarray], n: int, reg: float
) -> np.ndarray:
    """Least-squares factors for every row given the other side's factors."""
    indptr, indices, conf = csr
    f = other.shape[1]
    gram = other.T @ other + reg * np.eye(f)
    out = np.zeros((n, f), dtype=np.float64)
    for u in range(n):
        s, e = indptr[u], indptr[u + 1]
        if s == e:
            continue
        ys = other[indices[s:e]]
        c = conf[s:e]
        a = gram + (ys.T * (c - 1.0)) @ ys
        out[u] = np.linalg.solve(a, ys.T @ c)
    return out


def train_als(
    spec: AlsSpec, user: np.ndarray, item: np.ndarray, weight: np.ndarray,
    n_users: int, n_items: int,
) -> tuple[np.ndarray, np.ndarray]:
    """User factors [n_users, f] and item factors [n_items, f] (float32)."""
    rng = np.random.default_rng(spec.seed)
    conf = 1.0 + spec.alpha * np.log1p(weight.astype(np.float64))
    by_user = _csr(user, item, conf, n_users)
    by_item = _csr(item, user, conf, n_items)
    items_f = rng.standard_normal((n_items, spec.factors)) * 0.01
    users_f = np.zeros((n_users, spec.factors))
    for _ in range(spec.iterations):
        users_f = _solve_side(items_f, by_user, n_users, spec.reg)
        items_f = _solve_side(users_f, by_item, n_items, spec.reg)
    return users_f.astype(np.float32), items_f.astype(np.float32)
