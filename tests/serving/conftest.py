from __future__ import annotations

import json
from pathlib import Path

import pytest

# Importing tests.support.serving puts serving_template on sys.path, as the image has model_server.
from tests.support.serving import make_client


@pytest.fixture(scope="session")
def iris_model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Downloaded model dirs of a LogisticRegression and a RandomForest on iris, with the identity file the
    image builder writes."""
    from tests.support.sample_models import log_iris_model

    workdir = tmp_path_factory.mktemp("serving-models")
    dirs = {
        "logistic": log_iris_model(workdir, "logistic", "iris"),
        "forest": log_iris_model(workdir, "forest", "iris-forest"),
        "pipeline": log_iris_model(workdir, "pipeline", "iris-pipeline"),
    }
    for kind, model_dir in dirs.items():
        (model_dir / "mlops-model.json").write_text(
            json.dumps(
                {
                    "model_name": f"iris-{kind}",
                    "model_version": "1",
                    "run_id": f"run-{kind}",
                    "model_uri": f"models:/iris-{kind}/1",
                    "mlflow_uri": "sqlite:///test.db",
                }
            )
        )
    return dirs


@pytest.fixture(scope="session")
def pyfunc_models(iris_model_dirs):
    import mlflow.pyfunc

    return {kind: mlflow.pyfunc.load_model(str(path)) for kind, path in iris_model_dirs.items()}


@pytest.fixture(scope="session")
def clients(iris_model_dirs):
    return {kind: make_client(path) for kind, path in iris_model_dirs.items()}
