"""Open Inference Protocol (V2) conformance through the real clients from PyPI, against the model server
running as a process (as in the image): ``tritonclient[http]`` with its defaults (binary tensors) and
with JSON tensors, and KServe's ``InferenceRESTClient`` (in its own environment, see
scripts/kserve-client-env.sh). Predictions must equal ``mlflow.pyfunc``'s on the same model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.serving import served_process

REPO = Path(__file__).resolve().parents[2]
COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.3, 3.3, 6.0, 2.5], [5.9, 3.0, 4.2, 1.5]]
KINDS = ["logistic", "forest"]


@pytest.fixture(scope="module")
def served(iris_model_dirs):
    """Base URL of a running server per model kind."""
    with served_process(iris_model_dirs["logistic"]) as logistic, served_process(iris_model_dirs["forest"]) as forest:
        yield {"logistic": logistic, "forest": forest}


def expected(pyfunc_models, kind: str) -> list:
    want = pyfunc_models[kind].predict(pd.DataFrame(ROWS, columns=COLUMNS)).tolist()
    assert len(set(want)) > 1, "the sample rows should not all be one class"
    return want


def triton(url: str):
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(url=url.removeprefix("http://"))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_predictions_equal_pyfunc(served, pyfunc_models, kind, binary):
    import tritonclient.http as httpclient

    client = triton(served[kind])
    name = f"iris-{kind}"
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(name) and client.is_model_ready(name, "1")
    assert not client.is_model_ready("another-model")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata(name)
    assert metadata["name"] == name and metadata["versions"] == ["1"]
    assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [(c, "FP64") for c in COLUMNS]
    assert [o["name"] for o in metadata["outputs"]] == ["predict"]

    matrix = np.asarray(ROWS, dtype=np.float64)
    tensor = httpclient.InferInput("input-0", list(matrix.shape), "FP64")
    tensor.set_data_from_numpy(matrix, binary_data=binary)
    if binary:  # tritonclient's defaults: binary inputs, all outputs binary
        result = client.infer(name, [tensor], request_id="triton-1")
    else:
        result = client.infer(
            name,
            [tensor],
            model_version="1",
            request_id="triton-1",
            outputs=[httpclient.InferRequestedOutput("predict", binary_data=False)],
        )
    want = expected(pyfunc_models, kind)
    assert result.as_numpy("predict").tolist() == want
    response = result.get_response()
    assert response["id"] == "triton-1" and response["model_name"] == name and response["model_version"] == "1"
    output = result.get_output("predict")
    assert ("binary_data_size" in output.get("parameters", {})) is binary
    assert ("data" in output) is not binary


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_per_column_inputs_and_requested_outputs(served, pyfunc_models, binary):
    import tritonclient.http as httpclient

    client = triton(served["logistic"])
    matrix = np.asarray(ROWS, dtype=np.float64)
    inputs = []
    for index, column in enumerate(COLUMNS):
        tensor = httpclient.InferInput(column, [len(ROWS)], "FP64")
        tensor.set_data_from_numpy(np.ascontiguousarray(matrix[:, index]), binary_data=binary)
        inputs.append(tensor)
    outputs = [httpclient.InferRequestedOutput("predict_proba", binary_data=binary)]
    result = client.infer("iris-logistic", inputs, outputs=outputs)
    want = pyfunc_models["logistic"]._model_impl.predict_proba(pd.DataFrame(ROWS, columns=COLUMNS))
    assert np.allclose(result.as_numpy("predict_proba"), want)
    assert result.as_numpy("predict") is None  # only what was asked for


def test_tritonclient_errors_are_the_protocols(served):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = triton(served["logistic"])
    tensor = httpclient.InferInput("input-0", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.asarray([ROWS[0]]))
    with pytest.raises(InferenceServerException) as wrong_model:
        client.infer("another-model", [tensor])
    assert wrong_model.value.status() == "404" and "another-model" in wrong_model.value.message()
    with pytest.raises(InferenceServerException) as wrong_version:
        client.infer("iris-logistic", [tensor], model_version="7")
    assert wrong_version.value.status() == "404"
    with pytest.raises(InferenceServerException) as wrong_width:
        narrow = httpclient.InferInput("input-0", [1, 3], "FP64")
        narrow.set_data_from_numpy(np.asarray([[1.0, 2.0, 3.0]]))
        client.infer("iris-logistic", [narrow])
    assert wrong_width.value.status() == "400" and "4" in wrong_width.value.message()


@pytest.fixture(scope="module")
def kserve_python() -> str:
    """The separate environment's python (made once, cached): kserve does not fit the project's pins."""
    made = subprocess.run(
        [str(REPO / "scripts" / "kserve-client-env.sh")], capture_output=True, text=True, timeout=600, check=False
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("kind", KINDS)
def test_kserve_rest_client_predictions_equal_pyfunc(served, pyfunc_models, kserve_python, kind):
    run = subprocess.run(
        [
            kserve_python,
            str(Path(__file__).with_name("kserve_v2_client.py")),
            served[kind],
            f"iris-{kind}",
            json.dumps(ROWS),
            json.dumps(COLUMNS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    want = expected(pyfunc_models, kind)
    assert answer["live"] is True and answer["ready"] is True
    assert answer["model_ready"] is True and answer["wrong_model_ready"] is False
    assert answer["json"] == {"predict": want}
    assert answer["binary"] == {"predict": want}
    assert answer["columns"] == {"predict": want}
    assert answer["ids"] == ["kserve-json", "kserve-binary", "kserve-columns"]
    assert answer["wrong_model_status"] == 404
