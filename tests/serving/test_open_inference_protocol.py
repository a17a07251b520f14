"""The model server's Open Inference Protocol (V2) routes, request by request: every tensor datatype, flat
and nested data, the binary tensor extension, requested outputs, the echoed id, and the errors the
specification asks for. Successful answers are validated against the protocol's own OpenAPI schemas
(../shared/contracts/open-inference-protocol/open_inference_rest.yaml)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.3, 3.3, 6.0, 2.5], [5.9, 3.0, 4.2, 1.5]]
INFER = "/v2/models/iris-logistic/infer"
CONTRACT = Path(__file__).resolve().parents[3] / "shared" / "contracts" / "open-inference-protocol"


@pytest.fixture(scope="module")
def schemas() -> dict:
    path = CONTRACT / "open_inference_rest.yaml"
    if not path.exists():
        pytest.fail(f"the protocol's OpenAPI document is missing: {path}")
    return yaml.safe_load(path.read_text())["components"]


def conforms(schemas: dict, name: str, body: dict) -> None:
    import jsonschema

    jsonschema.validate(body, {"$ref": f"#/components/schemas/{name}", "components": schemas})


@pytest.fixture(scope="module")
def client(clients):
    return clients["logistic"]


@pytest.fixture(scope="module")
def want(pyfunc_models) -> list:
    return pyfunc_models["logistic"].predict(pd.DataFrame(ROWS, columns=COLUMNS)).tolist()


def tensor(data, datatype="FP64", shape=None, name="input-0") -> dict:
    return {"name": name, "datatype": datatype, "shape": shape or list(np.shape(data)), "data": data}


def test_health_and_metadata(client, schemas):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json()["ready"] is True
    server = client.get("/v2").json()
    conforms(schemas, "metadata_server_response", server)
    assert "binary_tensor_data" in server["extensions"]
    for path in ("/v2/models/iris-logistic", "/v2/models/iris-logistic/versions/1"):
        metadata = client.get(path).json()
        conforms(schemas, "metadata_model_response", metadata)
        assert metadata["name"] == "iris-logistic" and metadata["versions"] == ["1"]
        assert metadata["inputs"] == [{"name": c, "datatype": "FP64", "shape": [-1]} for c in COLUMNS]
        assert metadata["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]
    assert client.get("/v2/models/iris-logistic/ready").json() == {"name": "iris-logistic", "ready": True}
    assert client.get("/v2/models/iris-logistic/versions/1/ready").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/other",
        "/v2/models/other/ready",
        "/v2/models/iris-logistic/versions/2",
        "/v2/models/iris-logistic/versions/2/ready",
    ],
)
def test_another_model_or_version_is_404(client, schemas, path):
    response = client.get(path)
    assert response.status_code == 404
    conforms(schemas, "metadata_model_error_response", response.json())


@pytest.mark.parametrize("path", [INFER, "/v2/models/iris-logistic/versions/1/infer"])
@pytest.mark.parametrize("nested", [True, False], ids=["nested", "flat"])
def test_infer_matches_pyfunc(client, schemas, want, path, nested):
    data = ROWS if nested else [v for row in ROWS for v in row]
    response = client.post(path, json={"id": "req-7", "inputs": [tensor(data, shape=[4, 4])]})
    assert response.status_code == 200, response.text
    body = response.json()
    conforms(schemas, "inference_response", body)
    assert body["id"] == "req-7" and body["model_name"] == "iris-logistic" and body["model_version"] == "1"
    assert body["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [4], "data": want}]


def test_one_tensor_per_column_in_any_order(client, want):
    inputs = [tensor([row[i] for row in ROWS], name=c) for i, c in reversed(list(enumerate(COLUMNS)))]
    response = client.post(INFER, json={"inputs": inputs})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == want
    assert "id" not in response.json()


INTEGER_ROWS = [[5, 3, 1, 0], [6, 3, 5, 2], [6, 3, 6, 3]]


@pytest.mark.parametrize("datatype", ["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"])
def test_integer_datatypes_are_scored_as_numbers(client, pyfunc_models, datatype):
    response = client.post(INFER, json={"inputs": [tensor(INTEGER_ROWS, datatype)]})
    assert response.status_code == 200, response.text
    frame = pd.DataFrame(np.asarray(INTEGER_ROWS, dtype=np.float64), columns=COLUMNS)
    assert response.json()["outputs"][0]["data"] == pyfunc_models["logistic"].predict(frame).tolist()


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
def test_float_datatypes_binary_and_json(client, pyfunc_models, datatype):
    dtype = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}[datatype]
    matrix = np.asarray(ROWS, dtype=dtype)
    want = pyfunc_models["logistic"].predict(pd.DataFrame(matrix.astype(np.float64), columns=COLUMNS)).tolist()
    raw = matrix.astype(matrix.dtype.newbyteorder("<")).tobytes()
    header = json.dumps(
        {"inputs": [{"name": "x", "datatype": datatype, "shape": [4, 4], "parameters": {"binary_data_size": len(raw)}}]}
    ).encode()
    binary = client.post(
        INFER,
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
    )
    assert binary.status_code == 200, binary.text
    assert binary.json()["outputs"][0]["data"] == want
    as_json = client.post(INFER, json={"inputs": [tensor(matrix.astype(np.float64).tolist(), datatype)]})
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["outputs"][0]["data"] == want


def test_binary_outputs_when_asked(client, want):
    body = {
        "inputs": [tensor(ROWS)],
        "outputs": [{"name": "predict", "parameters": {"binary_data": True}}, {"name": "predict_proba"}],
    }
    response = client.post(INFER, json=body)
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    header = json.loads(response.content[:length])
    predict, proba = header["outputs"]
    assert predict["name"] == "predict" and "data" not in predict
    size = predict["parameters"]["binary_data_size"]
    assert size == 4 * 8 and len(response.content) == length + size
    assert np.frombuffer(response.content[length:], dtype="<i8").tolist() == want
    assert proba["name"] == "predict_proba" and proba["shape"] == [4, 3] and len(proba["data"]) == 12

    everything = client.post(INFER, json={"inputs": [tensor(ROWS)], "parameters": {"binary_data_output": True}})
    length = int(everything.headers["Inference-Header-Content-Length"])
    assert [o["name"] for o in json.loads(everything.content[:length])["outputs"]] == ["predict"]


def test_bytes_and_bool_tensors_are_decoded_and_checked(client):
    strings = [b"a", b"bc"]
    raw = b"".join(struct.pack("<I", len(s)) + s for s in strings)
    header = json.dumps(
        {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(raw)}}]}
    ).encode()
    response = client.post(INFER, content=header + raw, headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400 and "expects FP64" in response.json()["error"]  # decoded, then refused
    bools = client.post(INFER, json={"inputs": [tensor([[True, False, True, True]], "BOOL")]})
    assert bools.status_code == 200, bools.text
    not_bools = client.post(INFER, json={"inputs": [tensor([[1, 0, 1, 1]], "BOOL")]})
    assert not_bools.status_code == 400 and "BOOL" in not_bools.json()["error"]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"inputs": [tensor(ROWS, shape=[4, 5])]}, "needs 20 elements"),
        ({"inputs": [tensor(ROWS, "FP128")]}, "unknown datatype"),
        ({"inputs": [tensor([[1.5, 2, 3, 4]], "INT32")]}, "not INT32"),
        ({"inputs": [tensor([[300, 2, 3, 4]], "UINT8")]}, "does not fit UINT8"),
        ({"inputs": [tensor([[-1, 2, 3, 4]], "UINT32")]}, "does not fit UINT32"),
        ({"inputs": [tensor([["a", "b", "c", "d"]], "FP64")]}, "not FP64"),
        ({"inputs": [tensor([[1.0, 2.0, 3.0]])]}, "expects 4"),
        ({"inputs": [tensor(ROWS)], "outputs": [{"name": "nope"}]}, "unknown outputs"),
        ({"inputs": []}, "non-empty"),
        ({"inputs": [tensor(ROWS), tensor(ROWS, name="other")]}, "do not match"),
        ({"id": 7, "inputs": [tensor(ROWS)]}, "id must be a string"),
        ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4]}]}, "no data"),
    ],
)
def test_bad_requests_are_400_with_the_protocols_error(client, schemas, body, message):
    response = client.post(INFER, json=body)
    assert response.status_code == 400, response.text
    conforms(schemas, "inference_error_response", response.json())
    assert message in response.json()["error"]


def test_binary_size_mismatch_and_bad_header_are_400(client):
    raw = np.asarray(ROWS, dtype="<f8").tobytes()
    spec = {"name": "x", "datatype": "FP64", "shape": [4, 4], "parameters": {"binary_data_size": len(raw) - 8}}
    header = json.dumps({"inputs": [spec]}).encode()
    headers = {"Inference-Header-Content-Length": str(len(header))}
    short = client.post(INFER, content=header + raw[:-8], headers=headers)
    assert short.status_code == 400 and "binary_data_size" in short.json()["error"]
    exact = dict(spec, parameters={"binary_data_size": len(raw)})
    exact_header = json.dumps({"inputs": [exact]}).encode()
    extra = client.post(
        INFER,
        content=exact_header + raw + b"\0" * 8,
        headers={"Inference-Header-Content-Length": str(len(exact_header))},
    )
    assert extra.status_code == 400 and "belong to no input" in extra.json()["error"]
    too_long = client.post(INFER, content=header, headers={"Inference-Header-Content-Length": "99999"})
    assert too_long.status_code == 400
    not_json = client.post(INFER, content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]


def test_wrong_model_or_version_on_infer_is_404(client):
    body = {"inputs": [tensor(ROWS)]}
    assert client.post("/v2/models/other/infer", json=body).status_code == 404
    assert client.post("/v2/models/iris-logistic/versions/3/infer", json=body).status_code == 404
    unknown = client.get("/v2/nothing-here")
    assert unknown.status_code == 404 and set(unknown.json()) == {"error"}


def test_pyfunc_model_through_v2(tmp_path):
    from tests.support.sample_models import log_custom_pyfunc_model
    from tests.support.serving import make_client

    model_dir = log_custom_pyfunc_model(tmp_path)
    client = make_client(model_dir)
    metadata = client.get("/v2/models/model").json()
    assert metadata["platform"] == "mlflow_pyfunc"
    response = client.post("/v2/models/model/infer", json={"inputs": [tensor(ROWS)]})
    assert response.status_code == 200, response.text
    ratios = [round(row[2] / row[3], 6) for row in ROWS]
    assert response.json()["outputs"][0]["data"] == pytest.approx(ratios)
