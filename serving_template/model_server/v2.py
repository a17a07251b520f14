"""Open Inference Protocol (V2) REST: health, server and model metadata, model readiness and inference.

The served model answers to the name and version the deploy registered (``mlops-model.json`` in the
model folder, or MODEL_NAME/MODEL_VERSION); any other name or version is a 404. A column-based MLflow
signature is offered as one input tensor per column; a single 2-D tensor ``[rows, columns]`` (any
name) is accepted as well, which is what most V2 clients send. Outputs: ``predict`` (or the
signature's output names) and, for scikit-learn classifiers on request, ``predict_proba``.
Errors are ``{"error": "<message>"}``: 400 for a malformed request, 404 for an unknown model or
version, 503 while the model is loading, 500 when the model itself fails.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from model_server import __version__
from model_server.codec import dumps, loads
from model_server.model import LoadedModel, ModelInfo
from model_server.tensors import (
    NUMERIC_TYPES,
    Tensor,
    TensorError,
    decode_inputs,
    encode_output,
    split_binary_body,
    v2_datatype_of_mlflow,
)

SERVER_NAME = "mlops-model-server"
EXTENSIONS = ["binary_tensor_data"]
HEADER_LENGTH = "inference-header-content-length"
PROBABILITY_OUTPUT = "predict_proba"


class V2Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class InferRequest:
    id: str | None
    tensors: list[Tensor]
    outputs: list[RequestedOutput] | None
    binary_default: bool
    parameters: dict[str, Any] = field(default_factory=dict)


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}


def check_model(info: ModelInfo, name: str, version: str | None) -> None:
    if name != info.name:
        raise V2Error(404, f"unknown model '{name}': this server serves '{info.name}'")
    if version is not None and version != info.version:
        raise V2Error(404, f"unknown version '{version}' of model '{name}': this server serves version {info.version}")


def input_metadata(info: ModelInfo) -> list[dict[str, Any]]:
    schema = info.input_schema or []
    if schema and all(spec.get("type") == "tensor" for spec in schema):
        return [
            {
                "name": spec.get("name") or f"input-{index}",
                "datatype": v2_datatype_of_mlflow(spec.get("tensor-spec", {}).get("dtype", "float64")),
                "shape": list(spec.get("tensor-spec", {}).get("shape", [-1])),
            }
            for index, spec in enumerate(schema)
        ]
    if info.inputs and all(column.name for column in info.inputs):
        return [
            {"name": column.name, "datatype": v2_datatype_of_mlflow(column.type), "shape": [-1]}
            for column in info.inputs
        ]
    return [{"name": "input-0", "datatype": "FP64", "shape": [-1, -1]}]


def output_metadata(info: ModelInfo) -> list[dict[str, Any]]:
    schema = info.output_schema or []
    named = [spec for spec in schema if spec.get("type") != "tensor" and spec.get("name")]
    if named and len(named) == len(schema):
        return [
            {"name": spec["name"], "datatype": v2_datatype_of_mlflow(spec["type"]), "shape": [-1]} for spec in named
        ]
    if len(schema) == 1:
        spec = schema[0]
        if spec.get("type") == "tensor":
            tensor_spec = spec.get("tensor-spec", {})
            return [
                {
                    "name": "predict",
                    "datatype": v2_datatype_of_mlflow(tensor_spec.get("dtype", "float64")),
                    "shape": list(tensor_spec.get("shape", [-1])),
                }
            ]
        return [{"name": "predict", "datatype": v2_datatype_of_mlflow(spec.get("type", "double")), "shape": [-1]}]
    return [{"name": "predict", "datatype": "BYTES", "shape": [-1]}]


def model_metadata(info: ModelInfo, model: LoadedModel | None) -> dict[str, Any]:
    fast = model is not None and model.fast_path
    return {
        "name": info.name,
        "versions": [info.version] if info.version else [],
        "platform": "mlflow_sklearn" if fast or "sklearn" in info.flavors else "mlflow_pyfunc",
        "inputs": input_metadata(info),
        "outputs": output_metadata(info),
    }


def parse_infer_request(raw: bytes, header_length: str | None) -> InferRequest:
    try:
        head, tail = split_binary_body(raw, header_length)
        try:
            body = loads(head) if head else None
        except ValueError:
            raise V2Error(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise V2Error(400, "the request body must be a JSON object with inputs")
        request_id = body.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise V2Error(400, "id must be a string")
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise V2Error(400, "parameters must be an object")
        tensors = decode_inputs(body.get("inputs"), tail)
    except TensorError as exc:
        raise V2Error(400, str(exc)) from None
    binary_default = parameters.get("binary_data_output") is True
    outputs = None
    if body.get("outputs") is not None:
        if not isinstance(body["outputs"], list):
            raise V2Error(400, "outputs must be a list")
        outputs = []
        for spec in body["outputs"]:
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise V2Error(400, "each requested output needs a name")
            output_parameters = spec.get("parameters") or {}
            if not isinstance(output_parameters, dict):
                raise V2Error(400, f"output '{spec['name']}': parameters must be an object")
            if output_parameters.get("classification"):
                raise V2Error(400, f"output '{spec['name']}': the classification extension is not supported")
            if "shared_memory_region" in output_parameters:
                raise V2Error(400, f"output '{spec['name']}': shared memory outputs are not supported")
            outputs.append(RequestedOutput(spec["name"], bool(output_parameters.get("binary_data", binary_default))))
    return InferRequest(request_id, tensors, outputs, binary_default, parameters)


def _check_datatype(tensor: Tensor, mlflow_type: str | None) -> None:
    expected = v2_datatype_of_mlflow(mlflow_type) if mlflow_type else None
    if expected is None:
        return
    if expected in NUMERIC_TYPES:
        if tensor.datatype not in NUMERIC_TYPES and tensor.datatype != "BOOL":
            raise V2Error(400, f"input '{tensor.name}' is {tensor.datatype}; the model expects {expected}")
    elif expected != tensor.datatype:
        raise V2Error(400, f"input '{tensor.name}' is {tensor.datatype}; the model expects {expected}")


def tensors_to_columns(tensors: list[Tensor], info: ModelInfo, max_rows: int) -> tuple[list[str] | None, np.ndarray]:
    """(column names, 2-D array rows x columns) from per-column tensors or one 2-D tensor."""
    types = info.column_types
    names = list(types)
    given = [tensor.name for tensor in tensors]
    if names and set(given) == set(names) and (len(names) > 1 or tensors[0].array.ndim <= 1):
        by_name = {tensor.name: tensor for tensor in tensors}
        columns = []
        for name in names:
            tensor = by_name[name]
            _check_datatype(tensor, types[name])
            if tensor.array.ndim == 2 and tensor.array.shape[1] == 1:
                columns.append(tensor.array[:, 0])
            elif tensor.array.ndim == 1:
                columns.append(tensor.array)
            else:
                raise V2Error(400, f"input '{name}' has shape {tensor.shape}; a column is [rows] or [rows, 1]")
        lengths = {len(column) for column in columns}
        if len(lengths) != 1:
            raise V2Error(400, f"the column inputs have different lengths: {sorted(lengths)}")
        matrix = np.empty((lengths.pop(), len(names)), dtype=_common_dtype(columns))
        for index, column in enumerate(columns):
            matrix[:, index] = column
    elif len(tensors) == 1:
        tensor = tensors[0]
        for mlflow_type in set(types.values()):
            _check_datatype(tensor, mlflow_type)
        matrix = tensor.array
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.ndim != 2:
            raise V2Error(400, f"input '{tensor.name}' has shape {tensor.shape}; send [rows, columns]")
        if names and matrix.shape[1] != len(names):
            raise V2Error(
                400,
                f"input '{tensor.name}' has {matrix.shape[1]} columns; the model expects {len(names)}: "
                + ", ".join(names),
            )
    else:
        expected = ", ".join(names) if names else "one 2-D tensor"
        raise V2Error(400, f"inputs {given} do not match the model's inputs: {expected} (or one 2-D tensor)")
    if matrix.shape[0] == 0:
        raise V2Error(400, "the inputs hold no rows")
    if matrix.shape[0] > max_rows:
        raise V2Error(400, f"{matrix.shape[0]} rows is more than {max_rows}")
    return names or None, matrix


def _common_dtype(columns: list[np.ndarray]) -> np.dtype:
    if any(column.dtype == object for column in columns):
        return np.dtype(object)
    return np.result_type(*columns)


PredictMatrix = Callable[[np.ndarray], Awaitable[np.ndarray]]


async def infer(
    request: InferRequest,
    info: ModelInfo,
    model: LoadedModel,
    predict_matrix: PredictMatrix,
    max_rows: int,
    default_names: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Every output the request asks for (all default outputs when it names none), as arrays.
    ``default_names``: the names ``output_metadata(info)`` lists, when the caller has them already."""
    names, table = tensors_to_columns(request.tensors, info, max_rows)
    if default_names is None:
        default_names = [spec["name"] for spec in output_metadata(info)]
    wanted = [output.name for output in request.outputs] if request.outputs is not None else default_names
    available = set(default_names) | ({PROBABILITY_OUTPUT} if model.can_predict_proba else set())
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise V2Error(400, f"unknown outputs {unknown}; this model produces {sorted(available)}")
    results: dict[str, np.ndarray] = {}
    if model.fast_path:
        if table.dtype == object:
            raise V2Error(400, "the model takes numbers; BYTES inputs cannot be scored")
        matrix = table.astype(np.float64, copy=False)
        if not np.all(np.isfinite(matrix)):
            raise V2Error(400, "inputs must be finite numbers")
        if any(name != PROBABILITY_OUTPUT for name in wanted):
            try:
                predictions = await predict_matrix(matrix)
            except ValueError as exc:
                raise V2Error(400, f"the model refused the input: {exc}") from None
            results[default_names[0]] = np.asarray(predictions)
        if PROBABILITY_OUTPUT in wanted:
            results[PROBABILITY_OUTPUT] = np.asarray(model.predict_proba_matrix(matrix))
    else:
        import pandas as pd

        if table.dtype == object:
            table = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object])(table)
        frame = pd.DataFrame(table, columns=names)
        try:
            predictions = model.predict_frame(frame, None)
        except Exception as exc:  # pyfunc enforces the schema and raises MlflowException
            raise V2Error(400, f"the model refused the input: {str(exc)[:500]}") from None
        if hasattr(predictions, "columns"):
            for column in predictions.columns:
                results[str(column)] = predictions[column].to_numpy()
        else:
            results[default_names[0]] = np.asarray(predictions)
    return {name: results[name] for name in wanted if name in results}


def encode_response(request: InferRequest, info: ModelInfo, results: dict[str, np.ndarray]) -> tuple[bytes, int | None]:
    """(body, JSON header length when any output is binary, else None)."""
    binary_by_name = {output.name: output.binary for output in request.outputs or []}
    outputs = []
    raw_parts = []
    for name, array in results.items():
        output, raw = encode_output(name, _plain(array), binary_by_name.get(name, request.binary_default))
        outputs.append(output)
        raw_parts.append(raw)
    response: dict[str, Any] = {"model_name": info.name, "outputs": outputs}
    if info.version:
        response["model_version"] = info.version
    if request.id is not None:
        response["id"] = request.id
    header = dumps(response)
    if not any(raw_parts):
        return header, None
    return header + b"".join(raw_parts), len(header)


def _plain(array: np.ndarray) -> np.ndarray:
    """Pandas extension arrays and strings as numpy arrays the codec knows."""
    array = np.asarray(array)
    if array.dtype.kind in "U":
        return array.astype(object)
    return array
