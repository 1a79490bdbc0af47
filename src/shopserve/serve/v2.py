"""Open Inference Protocol (KServe V2) codec, with Triton's binary tensor extension.

Turns request bodies into named numpy arrays and arrays back into bodies; every mismatch
(lengths, shapes, datatypes) is an ``InputError`` naming the tensor.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson

from shopserve.errors import InputError
from shopserve.types import ModelSignature

HEADER = "inference-header-content-length"
V2_TO_NUMPY = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32",
               "UINT64": "uint64", "INT8": "int8", "INT16": "int16", "INT32": "int32",
               "INT64": "int64", "FP16": "float16", "FP32": "float32", "FP64": "float64",
               "BYTES": "object"}
NUMPY_TO_V2 = {v: k for k, v in V2_TO_NUMPY.items()} | {"string": "BYTES", "str": "BYTES"}


def v2_datatype(dtype: str) -> str:
    return NUMPY_TO_V2.get(dtype, "BYTES")


def decode_request(body: bytes, header_length: str | None) -> tuple[dict[str, np.ndarray],
                                                                    dict[str, bool], Any]:
    """(inputs, {output name: binary?} with "" for the request default, request id)."""
    json_part, binary = _split(body, header_length)
    try:
        request = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise InputError("request must be a JSON object with an 'inputs' list")
    offset = 0
    inputs: dict[str, np.ndarray] = {}
    for i, spec in enumerate(request["inputs"]):
        if not isinstance(spec, dict):
            raise InputError(f"inputs[{i}]: expected an object with name, shape, datatype")
        arr, used = _decode_input(spec, binary, offset, i)
        offset += used
        inputs[arr[0]] = arr[1]
    if offset != len(binary):
        raise InputError(f"binary data is {len(binary)} bytes but the inputs' binary_data_size "
                         f"add up to {offset}")
    params = _parameters(request, "request")
    wanted: dict[str, bool] = {"": bool(params.get("binary_data_output", False))}
    outputs = request.get("outputs") or []
    if not isinstance(outputs, list):
        raise InputError(f"'outputs' must be a list, got {type(outputs).__name__}")
    for out in outputs:
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise InputError("each entry of 'outputs' needs a 'name'")
        out_params = _parameters(out, f"output {out['name']!r}")
        wanted[out["name"]] = bool(out_params.get("binary_data", wanted[""]))
    return inputs, wanted, request.get("id")


def _parameters(holder: dict[str, Any], what: str) -> dict[str, Any]:
    params = holder.get("parameters") or {}
    if not isinstance(params, dict):
        raise InputError(f"{what} 'parameters' must be an object, got {type(params).__name__}")
    return params


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError as exc:
        raise InputError(f"Inference-Header-Content-Length {header_length!r} is not a number") \
            from exc
    if not 0 <= n <= len(body):
        raise InputError(f"Inference-Header-Content-Length is {n} but the body has {len(body)} "
                         "bytes")
    return body[:n], body[n:]


def _decode_input(spec: dict[str, Any], binary: bytes, offset: int,
                  i: int) -> tuple[tuple[str, np.ndarray], int]:
    name, shape, datatype = spec.get("name"), spec.get("shape"), spec.get("datatype")
    if not isinstance(name, str):
        raise InputError(f"inputs[{i}]: 'name' must be a string")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InputError(f"input {name!r}: 'shape' must be a list of non-negative integers")
    if datatype not in V2_TO_NUMPY:
        raise InputError(f"input {name!r}: unknown datatype {datatype!r}; expected one of "
                         f"{sorted(V2_TO_NUMPY)}")
    count = math.prod(shape)  # Python ints: a huge shape cannot wrap round to a small count
    size = _parameters(spec, f"input {name!r}").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise InputError(f"input {name!r}: binary_data_size {size!r} runs past the "
                             f"{len(binary)} bytes of binary data")
        chunk = binary[offset:offset + size]
        return (name, _from_binary(name, chunk, datatype, shape, count)), size
    data = spec.get("data")
    if data is None:
        raise InputError(f"input {name!r}: no 'data' and no binary_data_size")
    try:
        with np.errstate(over="raise"):  # 65520.0 as FP16 is out of range, not infinity
            flat = np.asarray(data, dtype=V2_TO_NUMPY[datatype]).reshape(-1)
    except (TypeError, ValueError, OverflowError, FloatingPointError) as exc:
        raise InputError(f"input {name!r}: data cannot be read as {datatype}: {exc}") from exc
    if flat.size != count:
        raise InputError(f"input {name!r}: shape {shape} needs {count} values, got {flat.size}")
    return (name, flat.reshape(shape)), 0


def _from_binary(name: str, chunk: bytes, datatype: str, shape: list[int],
                 count: int) -> np.ndarray:
    if datatype == "BYTES":
        items, pos = [], 0
        while pos < len(chunk):
            if pos + 4 > len(chunk):
                raise InputError(f"input {name!r}: truncated BYTES element length")
            (n,) = struct.unpack_from("<I", chunk, pos)
            if pos + 4 + n > len(chunk):
                raise InputError(f"input {name!r}: BYTES element runs past its binary data")
            items.append(chunk[pos + 4:pos + 4 + n])
            pos += 4 + n
        if len(items) != count:
            raise InputError(f"input {name!r}: shape {shape} needs {count} elements, got "
                             f"{len(items)}")
        return np.array(items, dtype=object).reshape(shape)
    dtype = np.dtype(V2_TO_NUMPY[datatype])
    if len(chunk) != count * dtype.itemsize:
        raise InputError(f"input {name!r}: shape {shape} of {datatype} needs "
                         f"{count * dtype.itemsize} bytes, binary_data_size says {len(chunk)}")
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def encode_response(model: str, version: int, outputs: dict[str, np.ndarray],
                    wanted: dict[str, bool], request_id: Any) -> tuple[bytes, dict[str, str]]:
    """(body, extra headers) with binary outputs appended after the JSON header when asked."""
    names = [n for n in wanted if n] or list(outputs)
    missing = [n for n in names if n not in outputs]
    if missing:
        raise InputError(f"unknown output(s) {missing}; the model gives {sorted(outputs)}")
    entries, blobs = [], []
    for name in names:
        arr = np.ascontiguousarray(outputs[name])
        entry: dict[str, Any] = {"name": name, "shape": list(arr.shape),
                                 "datatype": v2_datatype(arr.dtype.name)}
        if wanted.get(name, wanted[""]):
            blob = _to_binary(arr)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = arr.reshape(-1).tolist()
        entries.append(entry)
    head: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": entries}
    if request_id is not None:
        head["id"] = request_id
    json_part = orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return json_part, {}
    return json_part + b"".join(blobs), {"Inference-Header-Content-Length": str(len(json_part))}


def _to_binary(arr: np.ndarray) -> bytes:
    if arr.dtype == object:
        parts = []
        for item in arr.reshape(-1):
            raw = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    return arr.tobytes()


def model_metadata(name: str, version: int, signature: ModelSignature) -> dict[str, Any]:
    def tensor(spec: Any) -> dict[str, Any]:
        return {"name": spec.name, "datatype": v2_datatype(spec.dtype), "shape": list(spec.shape)}

    return {"name": name, "versions": [str(version)], "platform": "onnxruntime_onnx",
            "inputs": [tensor(s) for s in signature.inputs],
            "outputs": [tensor(s) for s in signature.outputs]}
