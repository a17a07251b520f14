"""Single-row prediction throughput and latency: this project's model server vs `mlflow models serve`.

For a LogisticRegression on iris and a 100-tree RandomForest, both servers serve the same downloaded
model on loopback ports (ours started exactly as in the image: `python -m model_server`, one uvicorn
process, default settings; MLflow's with --env-manager local, one worker). Each endpoint is measured
at concurrency 1 and 8 by two load generators, one after the other, in the same run:
- `wrk` (C, keep-alive, installed with apt-get when missing), for a fixed duration;
- a Python client (one keep-alive socket per connection, request bytes prepared once).
Endpoints: ours `/predict`, `/invocations` and `/v2/models/<m>/infer` (Open Inference Protocol),
MLflow's `/invocations`. Before each measurement one request checks the answer against
`mlflow.pyfunc`; wrk's run must have no errors and no non-2xx answers.

    .venv/bin/python bench/bench_predict.py [--duration 5] [--warmup 1]

Prints every figure, the ratios to `mlflow models serve` and a PASS/MISS verdict per target:
LogisticRegression at concurrency 8 through /predict and /v2 infer >= 8x; 100-tree RandomForest at
concurrency 8 >= 5x; LogisticRegression p50 at concurrency 1 <= 1 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ROW = [6.0, 2.7, 5.1, 1.6]


def log_models(workdir: Path) -> dict[str, Path]:
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    frame = load_iris(as_frame=True).frame
    features, target = frame.drop(columns="target"), frame["target"]
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    mlflow.create_experiment("bench", artifact_location=(workdir / "artifacts").as_uri())
    mlflow.set_experiment("bench")
    models = {
        "logistic_regression": LogisticRegression(max_iter=500).fit(features, target),
        "random_forest_100": RandomForestClassifier(n_estimators=100, random_state=0).fit(features, target),
    }
    dirs = {}
    for name, model in models.items():
        with warnings.catch_warnings(), mlflow.start_run():
            warnings.simplefilter("ignore")
            info = mlflow.sklearn.log_model(
                model, name="model", input_example=features.head(2), serialization_format="cloudpickle"
            )
        dirs[name] = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(workdir / name))
        )
    return dirs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ours(model_dir: Path, port: int) -> subprocess.Popen:
    (model_dir / "mlops-model.json").write_text(json.dumps({"model_name": model_dir.name, "model_version": "1"}))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "serving_template"),
        "MODEL_DIR": str(model_dir),
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    return subprocess.Popen([PYTHON, "-m", "model_server"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def start_mlflow(model_dir: Path, port: int) -> subprocess.Popen:
    mlflow_cli = str(Path(PYTHON).parent / "mlflow")
    return subprocess.Popen(
        [
            mlflow_cli,
            "models",
            "serve",
            "-m",
            str(model_dir),
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # it execs `uvicorn` by name: the one beside this interpreter
        env={**os.environ, "PATH": f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )


def wait_until_up(port: int, path: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on {port} exited: {process.stderr.read().decode()[-2000:]}")
        try:
            status, _ = Client(port).get(path)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server on {port} did not answer {path} within {timeout}s")


class Client:
    """A keep-alive HTTP/1.1 connection with the request bytes prepared once: as little client time
    per request as Python allows, so the server's cost dominates what is measured."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def request(self, raw: bytes) -> tuple[int, bytes]:
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")[1:]
            if line.lower().startswith(b"content-length:")
        )
        while len(rest) < length:
            self.buffer = rest
            self._fill()
            rest = self.buffer
        self.buffer = rest[length:]
        return status, rest[:length]

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            return self.request(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        finally:
            self.sock.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk


def post_bytes(path: str, body: dict) -> bytes:
    payload = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH-JSON {\"requests\": %d, \"duration_us\": %d, \"errors\": %d, \"non2xx\": %d, "
    .. "\"p50_us\": %d, \"p99_us\": %d}\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""

TARGETS = {
    # (model, endpoint, concurrency): minimum throughput ratio to mlflow models serve
    ("logistic_regression", "ours /predict", 8): 8.0,
    ("logistic_regression", "ours /v2 infer", 8): 8.0,
    ("random_forest_100", "ours /predict", 8): 5.0,
    ("random_forest_100", "ours /v2 infer", 8): 5.0,
}
P50_TARGET_MS = 1.0


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and apt-get could not install it")
    return found


def run_wrk(wrk: str, script: Path, port: int, path: str, body: bytes, concurrency: int, seconds: float) -> dict:
    threads = 1 if concurrency == 1 else 2
    completed = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{path}",
        ],
        env={**os.environ, "BENCH_BODY": body.decode()},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed: {completed.stderr[-1500:]} {completed.stdout[-1500:]}")
    line = next(line for line in completed.stdout.splitlines() if line.startswith("BENCH-JSON "))
    result = json.loads(line.removeprefix("BENCH-JSON "))
    # A failed answer (e.g. mlflow's 504 when overloaded) is reported and not counted as served.
    failed = result["errors"] + result["non2xx"]
    return {
        "errors": failed,
        "rps": (result["requests"] - failed) / (result["duration_us"] / 1e6),
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
    }


def run_python(port: int, raw: bytes, expected: bytes, concurrency: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    failures: list[str] = []
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        client, mine = Client(port), []
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                status, body = client.request(raw)
                mine.append(time.perf_counter() - started)
                if status != 200 or expected not in body:
                    failures.append(f"{status} {body[:200]!r}")
                    mine.pop()  # reported, not counted as served
        finally:
            client.sock.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if not latencies:
        raise RuntimeError(f"no successful answer: {failures[:1]}")
    latencies.sort()
    return {
        "errors": len(failures),
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
    }


def check_answer(port: int, raw: bytes, expected: bytes) -> None:
    client = Client(port)
    try:
        status, body = client.request(raw)
    finally:
        client.sock.close()
    if status != 200 or expected not in body:
        raise RuntimeError(f"unexpected answer {status}: {body[:300]!r} (wanted {expected!r})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up load per server")
    args = parser.parse_args()

    import mlflow.pyfunc
    import pandas as pd

    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT)
        dirs = log_models(Path(tmp))
        example = json.loads((dirs["logistic_regression"] / "serving_input_example.json").read_text())
        columns = example["dataframe_split"]["columns"]
        split_body = {"dataframe_split": {"columns": columns, "data": [ROW]}}
        rows = []
        for model_name, model_dir in dirs.items():
            want = mlflow.pyfunc.load_model(str(model_dir)).predict(pd.DataFrame([ROW], columns=columns)).tolist()
            v2_body = {"inputs": [{"name": "input-0", "shape": [1, len(ROW)], "datatype": "FP64", "data": ROW}]}
            endpoints = {  # name: (server, path, body, expected bytes in the answer)
                "ours /predict": ("ours", "/predict", {"inputs": [ROW]}, json.dumps(want).encode()),
                "ours /invocations": ("ours", "/invocations", split_body, json.dumps(want).encode()),
                "ours /v2 infer": (
                    "ours",
                    f"/v2/models/{model_dir.name}/infer",
                    v2_body,
                    b'"data":' + json.dumps(want).replace(" ", "").encode(),
                ),
                "mlflow /invocations": ("mlflow", "/invocations", split_body, json.dumps(want).encode()),
            }
            servers = {"ours": (start_ours, "/ready"), "mlflow": (start_mlflow, "/ping")}
            for server, (start, ready_path) in servers.items():
                port = free_port()
                process = start(model_dir, port)
                try:
                    wait_until_up(port, ready_path, process)
                    for endpoint, (owner, path, body, expected) in endpoints.items():
                        if owner != server:
                            continue
                        payload = json.dumps(body).encode()
                        raw = post_bytes(path, body)
                        check_answer(port, raw, expected)
                        run_python(port, raw, expected, 8, args.warmup)
                        for concurrency in (1, 8):
                            for generator in ("wrk", "python"):
                                if generator == "wrk":
                                    result = run_wrk(wrk, script, port, path, payload, concurrency, args.duration)
                                else:
                                    result = run_python(port, raw, expected, concurrency, args.duration)
                                check_answer(port, raw, expected)
                                rows.append((model_name, endpoint, generator, concurrency, result))
                                print(
                                    f"{model_name:20} {endpoint:20} {generator:6} c={concurrency}  "
                                    f"{result['rps']:8.0f} rps  p50 {result['p50_ms']:7.2f} ms  "
                                    f"p99 {result['p99_ms']:7.2f} ms"
                                    + (f"  ({result['errors']} failed answers)" if result["errors"] else ""),
                                    flush=True,
                                )
                finally:
                    process.terminate()
                    try:
                        process.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        process.kill()

        by_key = {(m, e, g, c): r for m, e, g, c, r in rows}
        print("\nratios (ours / mlflow models serve, same model, load generator and concurrency):")
        for model_name in dirs:
            for generator in ("wrk", "python"):
                for concurrency in (1, 8):
                    reference = by_key[(model_name, "mlflow /invocations", generator, concurrency)]
                    for endpoint in ("ours /predict", "ours /invocations", "ours /v2 infer"):
                        mine = by_key[(model_name, endpoint, generator, concurrency)]
                        print(
                            f"{model_name:20} {endpoint:20} {generator:6} c={concurrency}  "
                            f"throughput x{mine['rps'] / reference['rps']:.1f}  "
                            f"p50 x{reference['p50_ms'] / mine['p50_ms']:.1f} faster"
                        )
        print("\ntargets:")
        for (model_name, endpoint, concurrency), minimum in TARGETS.items():
            for generator in ("wrk", "python"):
                reference = by_key[(model_name, "mlflow /invocations", generator, concurrency)]
                ratio = by_key[(model_name, endpoint, generator, concurrency)]["rps"] / reference["rps"]
                verdict = "PASS" if ratio >= minimum else "MISS"
                print(
                    f"{verdict}  {model_name} {endpoint} c={concurrency} {generator}: "
                    f"x{ratio:.1f} (target x{minimum:g})"
                )
        for endpoint in ("ours /predict", "ours /v2 infer"):
            for generator in ("wrk", "python"):
                p50 = by_key[("logistic_regression", endpoint, generator, 1)]["p50_ms"]
                verdict = "PASS" if p50 <= P50_TARGET_MS else "MISS"
                print(
                    f"{verdict}  logistic_regression {endpoint} c=1 {generator}: "
                    f"p50 {p50:.2f} ms (target {P50_TARGET_MS:g} ms)"
                )


if __name__ == "__main__":
    main()
