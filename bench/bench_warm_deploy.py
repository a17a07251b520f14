"""A warm deploy against running the same script by hand, measured side by side in the same run.

Deploy: the real control service in-process (local target, throwaway data directory), the example
RandomForest script, the same requirements as the deploy before it, so a new model version goes
through train -> register -> build -> push -> commit -> sync -> wait, timed from request to a URL
whose /health answers.

Plain run: ``python train.py`` of the same script in a virtual environment with the same packages
(the training environment the service built for these requirements: same versions, bytecode
compiled), against an MLflow SQLite store that already exists (a first, untimed run creates it),
with the service's hook inactive (``MLOPS_SERVICE_RUN`` unset), as a user would run it. MLflow 3
saves a RandomForest with skops by default and then refuses it (untrusted types), so the plain copy
of the script asks for ``serialization_format="cloudpickle"``, the format the service's hook picks.

The two alternate, so machine load hits both alike; medians are reported. One more plain run under
a timing harness breaks the script's time down (interpreter start, imports, fitting, ``log_model``
and the requirement inference inside it).

Needs the services of scripts/services.sh. Usage:
    .venv/bin/python bench/bench_warm_deploy.py [--rounds 3] [--venv-cache DIR]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, cast

from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from control_api.app import create_app  # noqa: E402
from control_api.settings import Settings  # noqa: E402

SCRIPT = ROOT / "examples" / "train_random_forest.py"
REQUIREMENTS = ["scikit-learn"]
TARGET_RATIO = 0.6
STEPS = ("train", "register", "build", "push", "commit", "sync", "wait")

# Runs the script as __main__ after timing its imports, with log_model and MLflow's requirement
# inference wrapped to time them; prints the figures as one JSON line on stderr.
HARNESS = r"""
import json, runpy, sys, time
started = time.perf_counter()
import mlflow, mlflow.models, mlflow.sklearn, sklearn.datasets, sklearn.ensemble, sklearn.metrics
import sklearn.model_selection
imported = time.perf_counter()
spent = {"log_model": 0.0, "infer_requirements": 0.0}

def timed(owner, attribute, key):
    original = getattr(owner, attribute)
    def wrapper(*args, **kwargs):
        begin = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - begin
    setattr(owner, attribute, wrapper)

timed(mlflow.sklearn, "log_model", "log_model")
timed(mlflow.models, "infer_pip_requirements", "infer_requirements")
runpy.run_path(sys.argv[1], run_name="__main__")
finished = time.perf_counter()
sys.stderr.write("BENCH " + json.dumps({"imports": imported - started, "script": finished - imported, **spent}) + "\n")
"""


def plain_script(folder: Path) -> Path:
    source = SCRIPT.read_text()
    call = "input_example=X_test.head(3))"
    if call not in source:
        raise SystemExit(f"{SCRIPT} changed: cannot find {call!r} to add the serialization format")
    path = folder / "train.py"
    path.write_text(source.replace(call, 'input_example=X_test.head(3), serialization_format="cloudpickle")'))
    return path


def deploy(client: TestClient, model: str) -> dict[str, Any]:
    body = {
        "script_content": base64.b64encode(SCRIPT.read_bytes()).decode(),
        "model_name": model,
        "requirements": REQUIREMENTS,
    }
    started = time.perf_counter()
    answer = client.post("/mlops/deploy", json=body).json()
    answer["_wall"] = time.perf_counter() - started
    if answer.get("status") != "deployed":
        raise SystemExit(f"deploy failed: {json.dumps(answer.get('error') or answer)[:2000]}")
    return answer


def step_seconds(answer: dict[str, Any]) -> dict[str, float]:
    durations = {s["name"]: s["duration_seconds"] or 0.0 for s in answer["steps"]}
    train = next(s for s in answer["steps"] if s["name"] == "train")
    found = re.search(r" in ([0-9.]+) s", train.get("message") or "")
    durations["script"] = float(found.group(1)) if found else float("nan")
    return durations


def plain_environment(workdir: Path, store: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        # The environment is compiled already; this only keeps the shared environment untouched.
        "PYTHONDONTWRITEBYTECODE": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}",
    }


def plain_run(python: Path, workdir: Path, store: Path, argv: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [str(python), *argv], cwd=workdir, env=plain_environment(workdir, store), capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"plain run failed:\n{result.stderr[-3000:]}")
    return wall, result.stderr


def remove_model_images(model: str) -> None:
    """The model images this bench built (local and registry tags); runtime images stay cached."""
    import docker

    client = docker.from_env()
    for image in client.images.list():
        if any(tag.rsplit(":", 1)[0].endswith(f"/{model}") for tag in image.tags):
            for tag in image.tags:
                client.images.remove(tag, force=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3, help="timed deploys and plain runs (alternating)")
    parser.add_argument(
        "--venv-cache",
        type=Path,
        default=Path.home() / ".cache" / "mlops-bench" / "venvs",
        help="training environments, kept between bench runs (keyed by their requirements)",
    )
    args = parser.parse_args()
    namespace = "bench-" + uuid.uuid4().hex[:6]
    model = "bench-warm"
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        settings = Settings.model_validate(
            {
                "data_dir": Path(tmp) / "data",
                "api": {"allowed_namespaces": [namespace], "default_namespace": namespace},
                "registry": {"repository_prefix": "mlops-bench"},
                "training": {"venv_cache_dir": args.venv_cache},
            }
        )
        plain_dir = Path(tmp) / "plain"
        plain_dir.mkdir()
        store = plain_dir / "mlflow.db"
        script = plain_script(Path(tmp))
        with TestClient(create_app(settings)) as client:
            services = cast(Any, client.app).state.services
            try:
                first = deploy(client, model)  # environment, runtime image and workload exist after this
                env = services.environments.ensure(REQUIREMENTS, embedded_store=True)
                plain_run(env.python, plain_dir, store, [str(script)])  # creates the SQLite store
                deploys, plains = [], []
                for _ in range(args.rounds):
                    deploys.append(deploy(client, model))
                    plains.append(plain_run(env.python, plain_dir, store, [str(script)])[0])
                interpreter = min(plain_run(env.python, plain_dir, store, ["-c", "pass"])[0] for _ in range(3))
                _, harness_err = plain_run(env.python, plain_dir, store, ["-c", HARNESS, str(script)])
            finally:
                runtime = services.local_runtime
                for workload in runtime.list():
                    if workload.namespace == namespace:
                        runtime.delete(workload.namespace, workload.name)
                remove_model_images(model)
        report(first, deploys, plains, interpreter, harness_err)
    return 0


def report(first: dict, deploys: list[dict], plains: list[float], interpreter: float, harness_err: str) -> None:
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print(f"first deploy (untimed warm-up): {first['_wall']:.1f} s")
    columns = (*STEPS, "script")
    print(f"{'deploy':<8}" + "".join(f"{c:>9}" for c in columns) + f"{'total':>9}")
    for index, answer in enumerate(deploys, 1):
        durations = step_seconds(answer)
        print(
            f"{'warm' + str(index):<8}" + "".join(f"{durations[c]:>9.2f}" for c in columns) + f"{answer['_wall']:>9.2f}"
        )
    medians = {c: statistics.median(step_seconds(a)[c] for a in deploys) for c in columns}
    print(f"{'median':<8}" + "".join(f"{medians[c]:>9.2f}" for c in columns), end="")
    deploy_median = statistics.median(a["_wall"] for a in deploys)
    print(f"{deploy_median:>9.2f}")
    print("(script = the training script's own process inside the train step)")
    plain_median = statistics.median(plains)
    print("plain `python train.py`: " + ", ".join(f"{p:.2f}" for p in plains) + f" s; median {plain_median:.2f} s")
    breakdown = next((json.loads(x[6:]) for x in harness_err.splitlines() if x.startswith("BENCH ")), None)
    if breakdown:
        fitting = breakdown["script"] - breakdown["log_model"]
        print(
            f"  breakdown of one plain run: interpreter start {interpreter:.2f} s, "
            f"imports {breakdown['imports']:.2f} s, "
            f"script without log_model {fitting:.2f} s, log_model {breakdown['log_model']:.2f} s "
            f"(of which requirement inference {breakdown['infer_requirements']:.2f} s)"
        )
    ratio = deploy_median / plain_median
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(
        f"warm deploy / plain run = {deploy_median:.2f} / {plain_median:.2f} = {ratio:.2f}x "
        f"(target <= {TARGET_RATIO}x): {verdict}"
    )


if __name__ == "__main__":
    sys.exit(main())
