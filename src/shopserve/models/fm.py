"""A factorization machine (and, with no factors, logistic regression) trained in numpy.

Hand-written gradients and Adam, so that a fresh machine without torch can train the CTR model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class FmSpec(BaseModel):
    """How the numpy trainer fits; ``factors=0`` gives plain logistic regression."""

    model_config = ConfigDict(frozen=True)

    factors: int = Field(default=8, ge=0)
    epochs: int = Field(default=8, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=0.01, gt=0)
    l2: float = Field(default=1e-5, ge=0)
    seed: int = 0


@dataclass
class FmParams:
    """Weights of the FM: bias, linear weights, and factor tables for dense and hashed fields."""

    w0: np.ndarray  # [1]
    wd: np.ndarray  # [n_dense]
    wc: np.ndarray  # [n_buckets]
    vd: np.ndarray  # [n_dense, k]
    vc: np.ndarray  # [n_buckets, k]

    def arrays(self) -> list[np.ndarray]:
        return [self.w0, self.wd, self.wc, self.vd, self.vc]

    def copy(self) -> FmParams:
        return FmParams(*(a.copy() for a in self.arrays()))


def init_params(n_dense: int, n_buckets: int, factors: int, seed: int) -> FmParams:
    rng = np.random.default_rng(seed)
    return FmParams(
        w0=np.zeros(1, np.float32),
        wd=np.zeros(n_dense, np.float32),
        wc=np.zeros(n_buckets, np.float32),
        vd=(rng.standard_normal((n_dense, factors)) * 0.01).astype(np.float32),
        vc=(rng.standard_normal((n_buckets, factors)) * 0.01).astype(np.float32),
    )


def _field_vectors(p: FmParams, dense: np.ndarray, cat: np.ndarray) -> np.ndarray:
    return np.concatenate([p.vc[cat], dense[:, :, None] * p.vd[None]], axis=1)


def fm_logits(p: FmParams, dense: np.ndarray, cat: np.ndarray) -> np.ndarray:
    """Logits: bias + linear terms + pairwise factor interactions of every field."""
    linear = p.w0[0] + dense @ p.wd + p.wc[cat].sum(axis=1)
    if p.vc.shape[1] == 0:
        out: np.ndarray = linear.astype(np.float32)
        return out
    e = _field_vectors(p, dense, cat)
    s = e.sum(axis=1)
    pair = 0.5 * ((s * s).sum(axis=1) - (e * e).sum(axis=(1, 2)))
    logits: np.ndarray = (linear + pair).astype(np.float32)
    return logits


def sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = (1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))).astype(np.float32)
    return out


def fm_gradients(
    p: FmParams, dense: np.ndarray, cat: np.ndarray, y: np.ndarray
) -> tuple[list[np.ndarray], float]:
    """Gradients of the mean log loss for one minibatch, and that loss."""
    prob = sigmoid(fm_logits(p, dense, cat))
    g = ((prob - y) / len(y)).astype(np.float32)
    n_buckets, k = p.vc.shape
    flat_cat = cat.ravel()
    d_wc = np.bincount(flat_cat, weights=np.repeat(g, cat.shape[1]), minlength=n_buckets)
    d_vd = np.zeros_like(p.vd)
    d_vc = np.zeros_like(p.vc)
    if k:
        e = _field_vectors(p, dense, cat)
        d_e = g[:, None, None] * (e.sum(axis=1)[:, None, :] - e)
        n_cat = cat.shape[1]
        np.add.at(d_vc, flat_cat, d_e[:, :n_cat].reshape(-1, k))
        d_vd = (d_e[:, n_cat:] * dense[:, :, None]).sum(axis=0)
    grads = [np.array([g.sum()], np.float32), dense.T @ g, d_wc.astype(np.float32), d_vd, d_vc]
    loss = -np.mean(y * np.log(prob + 1e-7) + (1 - y) * np.log(1 - prob + 1e-7))
    return grads, float(loss)


class Adam:
    """Adam over a list of arrays, updated in place, with decoupled L2 decay."""

    def __init__(self, params: list[np.ndarray], lr: float, l2: float) -> None:
        self.params, self.lr, self.l2 = params, lr, l2
        self.m = [np.zeros_like(a) for a in params]
        self.v = [np.zeros_like(a) for a in params]
        self.t = 0

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        b1, b2 = 0.9, 0.999
        scale = self.lr * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for a, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            a -= (scale * m / (np.sqrt(v) + 1e-8) + self.lr * self.l2 * a).astype(a.dtype)


def train_fm(
    spec: FmSpec, train: dict[str, np.ndarray], y: np.ndarray,
    valid: dict[str, np.ndarray], y_valid: np.ndarray, n_buckets: int,
) -> FmParams:
    """Minibatch Adam; returns the weights of the epoch with the lowest validation loss."""
    dense, cat = train["dense"], train["cat"]
    p = init_params(dense.shape[1], n_buckets, spec.factors, spec.seed)
    opt = Adam(p.arrays(), spec.lr, spec.l2)
    rng = np.random.default_rng(spec.seed)
    best, best_loss = p.copy(), np.inf
    y32 = y.astype(np.float32)
    for _ in range(spec.epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(order), spec.batch_size):
            idx = order[start : start + spec.batch_size]
            grads, _ = fm_gradients(p, dense[idx], cat[idx], y32[idx])
            opt.step(grads)
        val_prob = sigmoid(fm_logits(p, valid["dense"], valid["cat"]))
        val_loss = -np.mean(y_valid * np.log(val_prob + 1e-7)
                            + (1 - y_valid) * np.log(1 - val_prob + 1e-7))
        if val_loss < best_loss:
            best, best_loss = p.copy(), float(val_loss)
    return best
