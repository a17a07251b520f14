"""Tensors of the Open Inference Protocol (V2): datatypes, JSON and binary decoding, and encoding.

JSON tensor data is row-major, flat or nested. The binary tensor extension (as ``tritonclient`` sends
by default) puts a JSON header of ``Inference-Header-Content-Length`` bytes first, then each binary
tensor's raw little-endian bytes in input order, each announced by ``parameters.binary_data_size``.
BYTES elements in binary form are a 4-byte little-endian length followed by that many bytes.
Every problem raises ``TensorError``, which the routes turn into a 400.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

# Little-endian throughout: the binary extension's byte order.
NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
INTEGER_TYPES = {name for name in NUMPY_DTYPES if name.startswith(("INT", "UINT"))}
FLOAT_TYPES = {"FP16", "FP32", "FP64"}
NUMERIC_TYPES = INTEGER_TYPES | FLOAT_TYPES

# MLflow signature types -> V2 datatypes (column-based signatures and tensor specs' numpy dtypes).
MLFLOW_TO_V2 = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}


class TensorError(ValueError):
    """A tensor the request describes wrongly (shape, datatype, data, binary size): a 400."""


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray  # already reshaped to ``shape``


V2_OF_NUMPY = {dtype: name for name, dtype in NUMPY_DTYPES.items() if name != "BYTES"}


def v2_datatype_of_numpy(dtype: np.dtype) -> str:
    if dtype.kind in "OSU":
        return "BYTES"
    found = V2_OF_NUMPY.get(dtype) or V2_OF_NUMPY.get(dtype.newbyteorder("<"))
    if found is None:
        raise TensorError(f"no V2 datatype for numpy dtype {dtype}")
    return found


def v2_datatype_of_mlflow(type_name: str) -> str:
    if type_name in MLFLOW_TO_V2:
        return MLFLOW_TO_V2[type_name]
    try:
        return v2_datatype_of_numpy(np.dtype(type_name))
    except (TypeError, TensorError):
        return "BYTES"


def _shape(value: Any, name: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise TensorError(f"input '{name}': shape must be a list of integers")
    if any(d < 0 for d in value):
        raise TensorError(f"input '{name}': shape {value} has a negative dimension")
    return value


def _flatten(data: Any, name: str) -> list[Any]:
    """Row-major elements of nested lists; nesting itself is not checked against the shape (the spec
    allows flat or natural form), only the element count is."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _check_elements(values: list[Any], datatype: str, name: str) -> None:
    for index, value in enumerate(values):
        if datatype == "BOOL":
            ok = isinstance(value, bool)
        elif datatype in INTEGER_TYPES:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif datatype in FLOAT_TYPES:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and isinstance(value, float) and not math.isfinite(value):
                ok = False
        else:
            ok = isinstance(value, str)
        if not ok:
            raise TensorError(
                f"input '{name}': element {index} is {type(value).__name__} {value!r:.40}, not {datatype}"
            )


def decode_json_tensor(spec: Any, binary: bytes | None = None) -> Tensor:
    """One ``$request_input``; ``binary`` is its slice of the body when it has ``binary_data_size``."""
    if not isinstance(spec, dict):
        raise TensorError("each input must be an object with name, shape, datatype and data")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise TensorError("every input needs a name")
    datatype = spec.get("datatype")
    if datatype not in NUMPY_DTYPES:
        raise TensorError(f"input '{name}': unknown datatype {datatype!r}; one of {', '.join(NUMPY_DTYPES)}")
    shape = _shape(spec.get("shape"), name)
    count = math.prod(shape)
    dtype = NUMPY_DTYPES[datatype]
    if binary is not None:
        if "data" in spec:
            raise TensorError(f"input '{name}': both data and binary_data_size are given")
        array = _decode_binary(binary, datatype, count, name)
    else:
        if "data" not in spec:
            raise TensorError(f"input '{name}' has no data")
        values = _flatten(spec["data"], name)
        if len(values) != count:
            raise TensorError(f"input '{name}': shape {shape} needs {count} elements, data has {len(values)}")
        _check_elements(values, datatype, name)
        if datatype == "BYTES":
            array = np.empty(count, dtype=object)
            array[:] = [value.encode() for value in values]
        else:
            try:
                array = np.array(values, dtype=dtype)
            except OverflowError as exc:
                raise TensorError(f"input '{name}': a value does not fit {datatype}") from exc
            if datatype in INTEGER_TYPES and array.size and array.tolist() != values:
                raise TensorError(f"input '{name}': a value does not fit {datatype}")
    return Tensor(name, datatype, shape, array.reshape(shape))


def _decode_binary(raw: bytes, datatype: str, count: int, name: str) -> np.ndarray:
    if datatype != "BYTES":
        itemsize = NUMPY_DTYPES[datatype].itemsize
        if len(raw) != count * itemsize:
            raise TensorError(
                f"input '{name}': binary_data_size {len(raw)} is not {count} elements of {itemsize} bytes"
            )
        if datatype == "BOOL":
            as_bytes = np.frombuffer(raw, dtype=np.uint8)
            if np.any(as_bytes > 1):
                raise TensorError(f"input '{name}': BOOL bytes must be 0 or 1")
            return as_bytes.astype(np.bool_)
        return np.frombuffer(raw, dtype=NUMPY_DTYPES[datatype])
    elements = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise TensorError(f"input '{name}': truncated BYTES element length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise TensorError(f"input '{name}': BYTES element longer than the binary data")
        elements.append(raw[offset : offset + length])
        offset += length
    if len(elements) != count:
        raise TensorError(f"input '{name}': shape needs {count} BYTES elements, binary data has {len(elements)}")
    array = np.empty(count, dtype=object)
    array[:] = elements
    return array


def split_binary_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tail) of a request body; the whole body is JSON without the header."""
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise TensorError("Inference-Header-Content-Length must be an integer") from None
    if length < 0 or length > len(body):
        raise TensorError(f"Inference-Header-Content-Length {length} is outside the body's {len(body)} bytes")
    return body[:length], body[length:]


def decode_inputs(inputs: Any, binary_tail: bytes) -> list[Tensor]:
    if not isinstance(inputs, list) or not inputs:
        raise TensorError("inputs must be a non-empty list of tensors")
    tensors = []
    offset = 0
    for spec in inputs:
        parameters = spec.get("parameters") if isinstance(spec, dict) else None
        if isinstance(parameters, dict) and "shared_memory_region" in parameters:
            raise TensorError("shared memory inputs are not supported by this server")
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            tensors.append(decode_json_tensor(spec))
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise TensorError("binary_data_size must be a non-negative integer")
        if offset + size > len(binary_tail):
            raise TensorError("binary_data_size goes past the end of the body")
        tensors.append(decode_json_tensor(spec, binary_tail[offset : offset + size]))
        offset += size
    if offset != len(binary_tail):
        raise TensorError(f"{len(binary_tail) - offset} bytes of binary data belong to no input")
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise TensorError("input names must be unique")
    return tensors


def encode_output(name: str, array: np.ndarray, binary: bool) -> tuple[dict[str, Any], bytes]:
    """A ``$response_output`` and, when ``binary``, its raw bytes (the JSON then has no ``data``)."""
    datatype = "BYTES" if array.dtype.kind in "OSU" else v2_datatype_of_numpy(array.dtype)
    output: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
    flat = array.reshape(-1)
    if not binary:
        if datatype == "BYTES":
            output["data"] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
        else:
            output["data"] = flat.tolist()
        return output, b""
    if datatype == "BYTES":
        parts = []
        for value in flat:
            encoded = value if isinstance(value, bytes) else str(value).encode()
            parts.append(struct.pack("<I", len(encoded)) + encoded)
        raw = b"".join(parts)
    else:
        raw = np.ascontiguousarray(flat, dtype=NUMPY_DTYPES[datatype]).tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    return output, raw
