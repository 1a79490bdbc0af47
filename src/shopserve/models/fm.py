"""A factorization machine with an optional MLP over its field vectors (a numpy DeepFM), and,
with no factors, logistic regression: hand-written gradients and Adam, no torch needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shopserve.models.mlp import init_mlp, mlp_backward, mlp_forward


class FmSpec(BaseModel):
    """How the numpy trainer fits; ``factors=0`` gives logistic regression, ``hidden`` a DeepFM.

    ``l2_embed`` penalizes the factor and linear weights of the categories in each minibatch (a
    frequent category pays more, a rare one cannot memorize its few rows); ``l2`` decays the
    dense and MLP weights. Training stops after ``patience`` epochs without a better validation
    loss and keeps the best epoch.
    """

    model_config = ConfigDict(frozen=True)

    factors: int = Field(default=8, ge=0)
    hidden: tuple[int, ...] = ()
    epochs: int = Field(default=30, ge=1)
    patience: int = Field(default=3, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=0.005, gt=0)
    l2: float = Field(default=1e-4, ge=0)
    l2_embed: float = Field(default=1e-3, ge=0)
    seed: int = 0


@dataclass
class FmParams:
    """Bias, linear weights, factor tables for dense and hashed fields, and MLP layers."""

    w0: np.ndarray  # [1]
    wd: np.ndarray  # [n_dense]
    wc: np.ndarray  # [n_buckets]
    vd: np.ndarray  # [n_dense, k]
    vc: np.ndarray  # [n_buckets, k]
    mlp: list[np.ndarray] = field(default_factory=list)  # [W1, b1, ..., W_out, b_out]

    def arrays(self) -> list[np.ndarray]:
        return [self.w0, self.wd, self.wc, self.vd, self.vc, *self.mlp]

    def copy(self) -> FmParams:
        return FmParams(self.w0.copy(), self.wd.copy(), self.wc.copy(), self.vd.copy(),
                        self.vc.copy(), [a.copy() for a in self.mlp])

    def remapped(self, remap: np.ndarray) -> FmParams:
        """These weights with bucket ``b`` answering as bucket ``remap[b]`` (rare → missing)."""
        return FmParams(self.w0.copy(), self.wd.copy(), self.wc[remap].copy(), self.vd.copy(),
                        self.vc[remap].copy(), [a.copy() for a in self.mlp])


def init_params(n_dense: int, n_buckets: int, factors: int, seed: int, n_cat: int = 0,
                hidden: tuple[int, ...] = ()) -> FmParams:
    rng = np.random.default_rng(seed)
    return FmParams(
        w0=np.zeros(1, np.float32),
        wd=np.zeros(n_dense, np.float32),
        wc=np.zeros(n_buckets, np.float32),
        vd=(rng.standard_normal((n_dense, factors)) * 0.01).astype(np.float32),
        vc=(rng.standard_normal((n_buckets, factors)) * 0.01).astype(np.float32),
        mlp=init_mlp((n_dense + n_cat) * factors, hidden, rng) if factors else [],
    )


def _field_vectors(p: FmParams, dense: np.ndarray, cat: np.ndarray) -> np.ndarray:
    return np.concatenate([p.vc[cat], dense[:, :, None] * p.vd[None]], axis=1)


def _forward(p: FmParams, dense: np.ndarray,
             cat: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray]]:
    linear = p.w0[0] + dense @ p.wd + p.wc[cat].sum(axis=1)
    if p.vc.shape[1] == 0:
        return linear.astype(np.float32), None, []
    e = _field_vectors(p, dense, cat)
    s = e.sum(axis=1)
    logit = linear + 0.5 * ((s * s).sum(axis=1) - (e * e).sum(axis=(1, 2)))
    acts: list[np.ndarray] = []
    if p.mlp:
        deep, acts = mlp_forward(p.mlp, e.reshape(len(e), -1))
        logit = logit + deep
    return logit.astype(np.float32), e, acts


def fm_logits(p: FmParams, dense: np.ndarray, cat: np.ndarray) -> np.ndarray:
    """Logits: bias + linear terms + pairwise factor interactions (+ the MLP's output)."""
    return _forward(p, dense, cat)[0]


def sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = (1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))).astype(np.float32)
    return out


def log_loss_of(y: np.ndarray, prob: np.ndarray) -> float:
    return float(-np.mean(y * np.log(prob + 1e-7) + (1 - y) * np.log(1 - prob + 1e-7)))


def fm_gradients(
    p: FmParams, dense: np.ndarray, cat: np.ndarray, y: np.ndarray, l2_embed: float = 0.0,
) -> tuple[list[np.ndarray], float]:
    """Gradients of the mean log loss (plus the L2 penalty of the categories seen) and the loss."""
    logit, e, acts = _forward(p, dense, cat)
    prob = sigmoid(logit)
    g = ((prob - y) / len(y)).astype(np.float32)
    n_buckets, k = p.vc.shape
    flat_cat = cat.ravel()
    decay = np.float32(2.0 * l2_embed / len(y))
    d_wc = np.bincount(flat_cat, weights=np.repeat(g, cat.shape[1]) + decay * p.wc[flat_cat],
                       minlength=n_buckets)
    d_vd = np.zeros_like(p.vd)
    d_vc = np.zeros_like(p.vc)
    d_mlp: list[np.ndarray] = []
    if e is not None:
        d_e = g[:, None, None] * (e.sum(axis=1)[:, None, :] - e)
        if p.mlp:
            d_mlp, d_in = mlp_backward(p.mlp, acts, g)
            d_e += d_in.reshape(e.shape)
        n_cat = cat.shape[1]
        d_e[:, :n_cat] += decay * e[:, :n_cat]
        np.add.at(d_vc, flat_cat, d_e[:, :n_cat].reshape(-1, k))
        d_vd = (d_e[:, n_cat:] * dense[:, :, None]).sum(axis=0)
    grads = [np.array([g.sum()], np.float32), dense.T @ g, d_wc.astype(np.float32), d_vd, d_vc,
             *d_mlp]
    return grads, log_loss_of(y, prob)


class Adam:
    """Adam over a list of arrays, updated in place, with decoupled decay where ``decays`` says."""

    def __init__(self, params: list[np.ndarray], lr: float, decays: list[float]) -> None:
        self.params, self.lr, self.decays = params, lr, decays
        self.m = [np.zeros_like(a) for a in params]
        self.v = [np.zeros_like(a) for a in params]
        self.t = 0

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        b1, b2 = 0.9, 0.999
        scale = self.lr * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for a, g, m, v, decay in zip(self.params, grads, self.m, self.v, self.decays,
                                     strict=True):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            a -= (scale * m / (np.sqrt(v) + 1e-8) + self.lr * decay * a).astype(a.dtype)


def train_fm(
    spec: FmSpec, train: dict[str, np.ndarray], y: np.ndarray,
    valid: dict[str, np.ndarray], y_valid: np.ndarray, n_buckets: int,
) -> FmParams:
    """Minibatch Adam with early stopping; returns the weights of the best validation epoch."""
    dense, cat = train["dense"], train["cat"]
    p = init_params(dense.shape[1], n_buckets, spec.factors, spec.seed, cat.shape[1],
                    spec.hidden)
    # Category tables get their L2 through the gradient (only the rows a batch touches).
    decays = [0.0, spec.l2, 0.0, spec.l2, 0.0] + [spec.l2] * len(p.mlp)
    opt = Adam(p.arrays(), spec.lr, decays)
    rng = np.random.default_rng(spec.seed)
    best, best_loss, stale = p.copy(), np.inf, 0
    y32 = y.astype(np.float32)
    for _ in range(spec.epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(order), spec.batch_size):
            idx = order[start : start + spec.batch_size]
            grads, _ = fm_gradients(p, dense[idx], cat[idx], y32[idx], spec.l2_embed)
            opt.step(grads)
        val_loss = log_loss_of(y_valid, sigmoid(fm_logits(p, valid["dense"], valid["cat"])))
        if val_loss < best_loss - 1e-5:
            best, best_loss, stale = p.copy(), val_loss, 0
        else:
            stale += 1
            if stale >= spec.patience:
                break
    return best
