"""The deep part of the numpy DeepFM: a ReLU MLP over the flattened field vectors.

Forward keeps what backward needs; both are plain numpy so the torch-free trainer can fit it.
"""

from __future__ import annotations

import numpy as np


def init_mlp(n_in: int, hidden: tuple[int, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """``[W1, b1, ..., W_out, b_out]``: He-initialized hidden layers, a small output layer."""
    arrays: list[np.ndarray] = []
    if not hidden:
        return arrays
    width = n_in
    for h in hidden:
        arrays += [(rng.standard_normal((width, h)) * np.sqrt(2.0 / width)).astype(np.float32),
                   np.zeros(h, np.float32)]
        width = h
    arrays += [(rng.standard_normal((width, 1)) * 0.01).astype(np.float32),
               np.zeros(1, np.float32)]
    return arrays


def mlp_forward(layers: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits ``[B]`` and the inputs of every layer (for ``mlp_backward``)."""
    acts = [x]
    h = x
    n_layers = len(layers) // 2
    for i in range(n_layers):
        h = h @ layers[2 * i] + layers[2 * i + 1]
        if i < n_layers - 1:
            h = np.maximum(h, 0.0)
            acts.append(h)
    return h[:, 0], acts


def mlp_backward(layers: list[np.ndarray], acts: list[np.ndarray],
                 d_out: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Gradients of every layer array and of the MLP input, given ``d loss / d logit``."""
    grads: list[np.ndarray] = [np.empty(0, np.float32)] * len(layers)
    d = d_out[:, None].astype(np.float32)
    for i in reversed(range(len(layers) // 2)):
        h_in = acts[i]
        grads[2 * i] = h_in.T @ d
        grads[2 * i + 1] = d.sum(axis=0)
        d = d @ layers[2 * i].T
        if i > 0:
            d = d * (h_in > 0)
    return grads, d
