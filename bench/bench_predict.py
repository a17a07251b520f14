"""Single-row prediction latency and throughput: this project's model server vs `mlflow models serve`.

For a LogisticRegression on iris and a 100-tree RandomForest, both servers serve the same downloaded
model on loopback ports (ours started exactly as in the image: `python -m model_server`, one uvicorn
process; MLflow's with --env-manager local, one worker). A keep-alive client per connection sends
single-row requests at concurrency 1 and 8 and prints requests/s, p50 and p99 per server, and the ratios.

    .venv/bin/python bench/bench_predict.py [--requests 2000] [--warmup 200]

The client shares the machine's cores with the server, so absolute numbers are pessimistic; the
ratio between the two servers, measured the same way, is the figure to compare.
"""

from __future__ import annotations

import argparse
import json
import os
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


def run_load(port: int, raw: bytes, expected: bytes, concurrency: int, total: int) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    per_worker = total // concurrency
    failures: list[str] = []

    def worker() -> None:
        client, mine = Client(port), []
        try:
            for _ in range(per_worker):
                started = time.perf_counter()
                status, body = client.request(raw)
                mine.append(time.perf_counter() - started)
                if status != 200 or expected not in body:
                    failures.append(f"{status} {body[:200]!r}")
                    return
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
    if failures:
        raise RuntimeError(f"unexpected answer: {failures[0]}")
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()

    import mlflow.pyfunc
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        dirs = log_models(Path(tmp))
        example = json.loads((dirs["logistic_regression"] / "serving_input_example.json").read_text())
        columns = example["dataframe_split"]["columns"]
        split_body = {"dataframe_split": {"columns": columns, "data": [ROW]}}
        rows = []
        for model_name, model_dir in dirs.items():
            want = mlflow.pyfunc.load_model(str(model_dir)).predict(pd.DataFrame([ROW], columns=columns)).tolist()
            expected = json.dumps(want).encode()  # e.g. b"[1]": both servers answer {"predictions": [1]...}
            servers = {
                "ours /predict inputs": (start_ours, "/ready", post_bytes("/predict", {"inputs": [ROW]})),
                "ours /invocations split": (start_ours, "/ready", post_bytes("/invocations", split_body)),
                "mlflow /invocations split": (start_mlflow, "/ping", post_bytes("/invocations", split_body)),
            }
            for server_name, (start, ready_path, raw) in servers.items():
                port = free_port()
                process = start(model_dir, port)
                try:
                    wait_until_up(port, ready_path, process)
                    run_load(port, raw, expected, 1, args.warmup)
                    for concurrency in (1, 8):
                        result = run_load(port, raw, expected, concurrency, args.requests)
                        rows.append((model_name, server_name, concurrency, result))
                        print(
                            f"{model_name:20} {server_name:26} c={concurrency}  {result['rps']:8.0f} rps  "
                            f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms",
                            flush=True,
                        )
                finally:
                    process.terminate()
                    try:
                        process.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        process.kill()

        print("\nratios (ours / mlflow models serve, same model, same concurrency):")
        by_key = {(m, s, c): r for m, s, c, r in rows}
        for model_name in dirs:
            for concurrency in (1, 8):
                reference = by_key[(model_name, "mlflow /invocations split", concurrency)]
                for ours in ("ours /predict inputs", "ours /invocations split"):
                    mine = by_key[(model_name, ours, concurrency)]
                    print(
                        f"{model_name:20} {ours:26} c={concurrency}  throughput x{mine['rps'] / reference['rps']:.1f}  "
                        f"p50 x{reference['p50_ms'] / mine['p50_ms']:.1f} faster"
                    )


if __name__ == "__main__":
    main()
