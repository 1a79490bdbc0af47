"""Real model inputs for optimize: calibration files checked against the graph's signature,
and splitting or tiling input arrays into batches of a given size.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from shopserve.errors import InputError, NotFoundError
from shopserve.runtime.onnx import check_tensor
from shopserve.types import ModelSignature

Batch = dict[str, np.ndarray]


def rows_of(arrays: Mapping[str, np.ndarray], source: str) -> int:
    """The common first-axis length of ``arrays``, or an ``InputError`` naming the mismatch."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise InputError(f"{source}: inputs have different numbers of rows: {lengths}")
    return next(iter(lengths.values()))


def split_batches(arrays: Mapping[str, np.ndarray], batch_size: int) -> list[Batch]:
    n = rows_of(arrays, "inputs")
    return [{k: v[i:i + batch_size] for k, v in arrays.items()} for i in range(0, n, batch_size)]


def concat_batches(batches: Sequence[Batch]) -> Batch:
    if not batches:
        raise InputError("no input rows to draw from")
    return {k: np.concatenate([b[k] for b in batches], axis=0) for k in batches[0]}


def tile_rows(arrays: Mapping[str, np.ndarray], rows: int) -> Batch:
    """Exactly ``rows`` rows, repeating the real rows in order when there are fewer."""
    n = rows_of(arrays, "inputs")
    if n == 0:
        raise InputError("no input rows to draw from")
    index = np.arange(rows) % n
    return {k: np.ascontiguousarray(v[index]) for k, v in arrays.items()}


def load_calibration(path: Path, signature: ModelSignature, batch_size: int = 64) -> list[Batch]:
    """Batches from an ``.npz`` holding one array per graph input, each checked against it."""
    if not path.is_file():
        raise NotFoundError(f"calibration file {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"calibration file {path}: not a readable .npz archive: {exc}") from exc
    expected = [s.name for s in signature.inputs]
    missing = [n for n in expected if n not in arrays]
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise InputError(f"calibration file {path}: arrays must be exactly the graph inputs "
                         f"{expected}; missing {missing}, unexpected {extra}")
    checked: Batch = {}
    for spec in signature.inputs:
        try:
            checked[spec.name] = check_tensor(spec, arrays[spec.name])
        except InputError as exc:
            raise InputError(f"calibration file {path}: {exc}") from exc
    if rows_of(checked, f"calibration file {path}") == 0:
        raise InputError(f"calibration file {path}: holds no rows")
    return split_batches(checked, batch_size)
