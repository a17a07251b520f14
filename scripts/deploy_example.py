"""Deploy the example training script through the control API and print a real prediction.

Usage: deploy_example.py CONTROL_URL [SCRIPT] [MODEL_NAME]
Talks to the service only over HTTP, exactly as a client would.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    control = sys.argv[1].rstrip("/")
    script = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "examples" / "train_random_forest.py"
    model_name = sys.argv[3] if len(sys.argv) > 3 else "iris-demo"
    body = {
        "script_content": base64.b64encode(script.read_bytes()).decode(),
        "script_name": script.name,
        "model_name": model_name,
        "experiment_name": "examples",
        "requirements": ["scikit-learn"],
        "deployment_config": {"replicas": 1, "cpu_limit": "1", "memory_limit": "1Gi"},
    }
    started = time.monotonic()
    print(f"POST {control}/mlops/deploy (model {model_name}, script {script.name}) ...", flush=True)
    response = httpx.post(f"{control}/mlops/deploy", json=body, params={"wait": "false"}, timeout=60)
    response.raise_for_status()
    deployment_id = response.json()["deployment_id"]
    last_status = None
    while True:
        deployment = httpx.get(f"{control}/mlops/deployments/{deployment_id}", timeout=30).json()
        if deployment["status"] != last_status:
            print(f"  [{time.monotonic() - started:6.1f}s] {deployment['status']}", flush=True)
            last_status = deployment["status"]
        if deployment["status"] in ("deployed", "registered", "failed", "timed_out"):
            break
        time.sleep(1)
    for step in deployment["steps"]:
        timing = f"{step['name']:<9} {step['status']:<10} {step.get('duration_seconds') or 0:7.2f}s"
        print(f"    {timing}  {step.get('message') or ''}")
    if deployment["status"] != "deployed":
        print(json.dumps(deployment["error"], indent=2), file=sys.stderr)
        return 1
    print(f"model {model_name} version {deployment['model_version']} (run {deployment['run_id']})")
    print(f"image  {deployment['image_uri']}")
    print(f"commit {deployment['commit']}")
    print(f"url    {deployment['inference_url']}")
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    columns = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    request = {"dataframe_split": {"columns": columns, "data": rows}}
    prediction = httpx.post(deployment["inference_url"], json=request, timeout=30)
    prediction.raise_for_status()
    print(f"POST {deployment['inference_url']} {json.dumps(request)}")
    print(f"-> {json.dumps(prediction.json())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
