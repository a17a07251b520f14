"""Drives a model server with KServe's own V2 REST client (``kserve.InferenceRESTClient``).

Runs in the separate environment made by scripts/kserve-client-env.sh (kserve's pins do not fit the
project's venv), so it imports nothing from the project. Arguments: base URL, model name, a JSON
list of rows and a JSON list of column names. Prints one JSON object: liveness and readiness as the
client reads them, the outputs of each request form (JSON tensors, binary tensors, one tensor per
column) with the echoed request ids, and the status of a request to a model the server does not serve.
"""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput


async def main(base_url: str, model_name: str, rows: list[list[float]], columns: list[str]) -> dict:
    matrix = np.asarray(rows, dtype=np.float64)
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=60))
    answer: dict = {
        "live": await client.is_server_live(base_url),
        "ready": await client.is_server_ready(base_url),
        "model_ready": await client.is_model_ready(base_url, model_name),
        "wrong_model_ready": await client.is_model_ready(base_url, model_name + "-not-served"),
    }

    async def run(request: InferRequest, name: str) -> dict:
        response = await client.infer(base_url, request, model_name=name)
        answer.setdefault("ids", []).append(response.id)
        return {output.name: output.as_numpy().tolist() for output in response.outputs}

    as_json = InferInput("input-0", list(matrix.shape), "FP64")
    as_json.set_data_from_numpy(matrix, binary_data=False)
    answer["json"] = await run(InferRequest(model_name, [as_json], request_id="kserve-json"), model_name)

    as_binary = InferInput("input-0", list(matrix.shape), "FP64")
    as_binary.set_data_from_numpy(matrix, binary_data=True)
    binary_request = InferRequest(
        model_name,
        [as_binary],
        request_id="kserve-binary",
        request_outputs=[RequestedOutput("predict", {"binary_data": True})],
    )
    answer["binary"] = await run(binary_request, model_name)

    if columns:
        per_column = []
        for index, column in enumerate(columns):
            tensor = InferInput(column, [matrix.shape[0]], "FP64")
            tensor.set_data_from_numpy(np.ascontiguousarray(matrix[:, index]), binary_data=False)
            per_column.append(tensor)
        answer["columns"] = await run(InferRequest(model_name, per_column, request_id="kserve-columns"), model_name)

    try:
        await client.infer(base_url, InferRequest(model_name, [as_json]), model_name=model_name + "-not-served")
        answer["wrong_model_status"] = 200
    except Exception as exc:  # httpx.HTTPStatusError carries the response
        answer["wrong_model_status"] = getattr(getattr(exc, "response", None), "status_code", repr(exc))
    await client.close()
    return answer


if __name__ == "__main__":
    url, name, rows_json, columns_json = sys.argv[1:5]
    print(json.dumps(asyncio.run(main(url, name, json.loads(rows_json), json.loads(columns_json)))))
