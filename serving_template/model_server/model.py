"""Loading the model baked into the image, and calling it.

Fast path: a scikit-learn model saved with pickle/cloudpickle (or skops) is loaded as the native
estimator and called on a numpy array built straight from the JSON, skipping per-request pandas and
pyfunc overhead. Every other flavor goes through ``mlflow.pyfunc``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from model_server.forest import CompiledForest, compile_forest
from model_server.linear import CompiledLinear, compile_linear

NUMERIC_TYPES = {"double", "float", "long", "integer", "boolean"}
# Above this many rows scikit-learn's own compiled loops beat walking all trees at once in numpy.
COMPILED_MAX_ROWS = 256


@dataclass
class Column:
    name: str | None
    type: str
    required: bool = True


@dataclass
class ModelInfo:
    name: str
    version: str
    run_id: str
    model_uri: str
    mlflow_uri: str
    flavors: dict[str, Any]
    inputs: list[Column] = field(default_factory=list)
    input_schema: list[dict] | None = None
    output_schema: list[dict] | None = None
    input_example: Any = None
    column_types: dict[str, str] = field(default_factory=dict)  # named input columns -> MLflow type


def read_model_info(model_dir: Path) -> ModelInfo:
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    identity_file = model_dir / "mlops-model.json"
    identity = json.loads(identity_file.read_text()) if identity_file.exists() else {}
    signature = mlmodel.get("signature") or {}
    inputs = json.loads(signature["inputs"]) if signature.get("inputs") else None
    outputs = json.loads(signature["outputs"]) if signature.get("outputs") else None
    columns = [
        Column(c.get("name"), c.get("type", "double"), c.get("required", True))
        for c in inputs or []
        if c.get("type") != "tensor"
    ]
    example = None
    example_file = model_dir / "serving_input_example.json"
    if example_file.exists():
        try:
            example = json.loads(example_file.read_text())
        except ValueError:
            example = None
    return ModelInfo(
        name=os.environ.get("MODEL_NAME") or identity.get("model_name", "model"),
        version=str(os.environ.get("MODEL_VERSION") or identity.get("model_version", "")),
        run_id=identity.get("run_id") or mlmodel.get("run_id", ""),
        model_uri=identity.get("model_uri", ""),
        mlflow_uri=identity.get("mlflow_uri", ""),
        flavors=mlmodel.get("flavors") or {},
        inputs=columns,
        input_schema=inputs,
        output_schema=outputs,
        input_example=example,
        column_types={column.name: column.type for column in columns if column.name},
    )


class LoadedModel:
    """What the routes call: ``predict(rows)`` and, for classifiers, ``predict_proba(rows)``."""

    def __init__(self, model_dir: Path, info: ModelInfo) -> None:
        self.info = info
        self.native: Any = None
        # Tree ensembles (model_server.forest) and linear models (model_server.linear) scored without
        # scikit-learn's per-call overhead, when that gives exactly scikit-learn's answers.
        self.compiled: CompiledForest | CompiledLinear | None = None
        self.pyfunc: Any = None
        sklearn_conf = info.flavors.get("sklearn")
        all_numeric = all(c.type in NUMERIC_TYPES for c in info.inputs)
        self.needs_frame = False
        if sklearn_conf and all_numeric:
            self.native = _load_sklearn(model_dir, sklearn_conf)
            # Models fit on DataFrames warn on every numpy call; the column order is checked here instead.
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            self.needs_frame = not self._accepts_numpy()
            if not self.needs_frame:
                samples = self._sample_matrix()
                self.compiled = compile_forest(self.native, samples) or compile_linear(self.native, samples)
        else:
            import mlflow.pyfunc

            self.pyfunc = mlflow.pyfunc.load_model(str(model_dir))
        self.classes = getattr(self.native, "classes_", None) if self.native is not None else None

    @property
    def fast_path(self) -> bool:
        return self.native is not None

    @property
    def can_predict_proba(self) -> bool:
        return self.native is not None and hasattr(self.native, "predict_proba")

    def predict_matrix(self, matrix):
        if self.compiled is not None and matrix.shape[0] <= COMPILED_MAX_ROWS:
            return self.compiled.predict(matrix)
        return self.native.predict(self._native_input(matrix))

    def predict_proba_matrix(self, matrix):
        if (
            isinstance(self.compiled, CompiledForest)
            and self.compiled.is_classifier
            and len(matrix) <= COMPILED_MAX_ROWS
        ):
            return self.compiled.predict_proba(matrix)
        return self.native.predict_proba(self._native_input(matrix))

    def _sample_matrix(self):
        import numpy as np

        return np.asarray(example_rows(self.info) or [[0.0] * len(self.info.inputs)], dtype=np.float64)

    def _native_input(self, matrix):
        if not self.needs_frame:
            return matrix
        import pandas as pd

        return pd.DataFrame(matrix, columns=[c.name for c in self.info.inputs])

    def _accepts_numpy(self) -> bool:
        """Some pipelines select columns by name (a ColumnTransformer on DataFrame columns) and refuse a
        bare array: found once at load time, they get a DataFrame per request, still without pyfunc."""

        if not self.info.inputs or not all(c.name for c in self.info.inputs):
            return True
        probe = self._sample_matrix()
        try:
            self.native.predict(probe)
            return True
        except Exception:
            return False

    def predict_frame(self, frame, params: dict | None = None):
        # MLflow's protocol carries model parameters as "params"; only pass them when sent.
        return self.pyfunc.predict(frame, params=params) if params else self.pyfunc.predict(frame)


def example_rows(info: ModelInfo) -> list[list[Any]] | None:
    from model_server.inputs import InputError, extract_rows

    if info.input_example is None:
        return None
    try:
        rows, _ = extract_rows(info.input_example, info.inputs, 1000)
        return rows
    except InputError:
        return None


def _load_sklearn(model_dir: Path, conf: dict) -> Any:
    path = model_dir / conf.get("pickled_model", "model.pkl")
    serialization = conf.get("serialization_format", "cloudpickle")
    if serialization == "skops":
        import skops.io

        # Only the types MLflow recorded as trusted when saving, as mlflow.sklearn does: trusting whatever
        # the file lists would defeat the point of skops.
        return skops.io.load(str(path), trusted=conf.get("skops_trusted_types") or None)
    with open(path, "rb") as handle:
        if serialization == "pickle":
            import pickle

            return pickle.load(handle)
        import cloudpickle

        return cloudpickle.load(handle)
