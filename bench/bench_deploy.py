"""Deploy timing: a cold deploy (new requirements: new training env and runtime image) and warm
deploys (same requirements, new version), time per step, from request to a ready URL.

Runs the real control service in-process on a throwaway data dir with the local target; needs the
services of scripts/services.sh. Usage: .venv/bin/python bench/bench_deploy.py [--warm 3]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from control_api.app import create_app  # noqa: E402
from control_api.settings import Settings  # noqa: E402


def deploy(client: TestClient, model: str, requirements: list[str]) -> dict:
    script = (ROOT / "examples" / "train_random_forest.py").read_bytes()
    body = {"script_content": base64.b64encode(script).decode(), "model_name": model, "requirements": requirements}
    started = time.perf_counter()
    answer = client.post("/mlops/deploy", json=body).json()
    answer["_wall"] = time.perf_counter() - started
    if answer["status"] != "deployed":
        raise SystemExit(f"deploy failed: {answer['error']}")
    return answer


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", type=int, default=3)
    args = parser.parse_args()
    namespace = "bench-" + uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            api={"allowed_namespaces": [namespace], "default_namespace": namespace},
            registry={"repository_prefix": "mlops-bench"},
        )
        with TestClient(create_app(settings)) as client:
            # A specifier no earlier run used, so the training environment is built cold. The runtime
            # image is keyed by the model's own requirements (MLflow's requirements.txt), so it is
            # cold only the first time on a machine; the build column's note says which happened.
            requirements = ["scikit-learn", f"joblib>=1.0,!=0.0.{uuid.uuid4().int % 10**6}"]
            runs = [("cold", deploy(client, "bench-model", requirements))]
            for i in range(args.warm):
                runs.append((f"warm{i + 1}", deploy(client, "bench-model", requirements)))
            steps = [s["name"] for s in runs[0][1]["steps"]]
            print(f"{'run':<7}" + "".join(f"{s:>10}" for s in steps) + f"{'total':>10}")
            for label, run in runs:
                durations = {s["name"]: s["duration_seconds"] or 0.0 for s in run["steps"]}
                build = next(s for s in run["steps"] if s["name"] == "build")["message"] or ""
                runtime_note = "runtime reused" if "reused" in build else "runtime built"
                print(
                    f"{label:<7}"
                    + "".join(f"{durations[s]:>10.2f}" for s in steps)
                    + f"{run['_wall']:>10.2f}  {runtime_note}"
                )
            warm_totals = [run["_wall"] for label, run in runs[1:]]
            if warm_totals:
                print(
                    f"warm deploy (same requirements, new version): median {statistics.median(warm_totals):.1f} s "
                    f"request to ready URL; cold {runs[0][1]['_wall']:.1f} s; target <= 15 s"
                )
            runtime = client.app.state.services.local_runtime
            for workload in runtime.list():
                if workload.namespace == namespace:
                    runtime.delete(workload.namespace, workload.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
