"""The CLI's pieces without a control service: config precedence, request building, the curl, the progress board."""

from __future__ import annotations

import base64
import io
import json
import shlex
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from rich.console import Console

from control_api.cli_user import app as cli_app
from control_api.cli_user.config import ConfigError, resolve_connection
from control_api.cli_user.deploy_request import DeployArgumentError, build_deploy_body, read_requirements_file
from control_api.cli_user.predict_example import GENERIC_BODY, curl_command, example_body
from control_api.cli_user.progress import LiveProgress, StepBoard
from control_api.client import MlopsClient, ServerSentEvent, parse_sse

# ---- config --------------------------------------------------------------------------------------


def test_connection_precedence_flag_env_file_default(tmp_path):
    config = tmp_path / "mlops" / "config.toml"
    config.parent.mkdir()
    config.write_text('server = "file.example:9000"\napi_key = "from-file"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert resolve_connection(None, None, env).server == "http://file.example:9000"
    assert resolve_connection(None, None, env).api_key == "from-file"
    with_env = {**env, "MLOPS_SERVER": "https://env.example/", "MLOPS_API_KEY": "from-env"}
    assert (resolve_connection(None, None, with_env).server, resolve_connection(None, None, with_env).api_key) == (
        "https://env.example",
        "from-env",
    )
    flagged = resolve_connection("http://flag.example", "from-flag", with_env)
    assert (flagged.server, flagged.api_key) == ("http://flag.example", "from-flag")
    assert resolve_connection(None, None, {"HOME": str(tmp_path / "empty")}).server == "http://127.0.0.1:8000"
    config.write_text("server = 5\n")
    with pytest.raises(ConfigError, match="server must be a string"):
        resolve_connection(None, None, env)


# ---- request ---------------------------------------------------------------------------------------


def test_deploy_body_from_arguments(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    (tmp_path / "base.txt").write_text("numpy>=1.26  # pinned below 2 elsewhere\n\n# comment\n")
    (tmp_path / "requirements.txt").write_text("-r base.txt\nscikit-learn==1.5.2\n")
    body = build_deploy_body(
        script,
        model_name="demo",
        requirement_files=[tmp_path / "requirements.txt"],
        requirements=["pandas", "numpy>=1.26"],
        env=["A=1", "B=x=y"],
        replicas=2,
        cpu="500m",
        memory="1Gi",
        namespace="staging",
        experiment="exp",
    )
    assert base64.b64decode(body["script_content"]) == b"print('hi')\n"
    assert body["script_name"] == "train.py" and body["model_name"] == "demo"
    assert body["requirements"] == ["numpy>=1.26", "scikit-learn==1.5.2", "pandas"]
    assert body["environment_vars"] == {"A": "1", "B": "x=y"}
    assert body["deployment_config"] == {"replicas": 2, "cpu_limit": "500m", "memory_limit": "1Gi"}
    assert (body["namespace"], body["experiment_name"]) == ("staging", "exp")
    minimal = build_deploy_body(script, model_name="demo")
    assert set(minimal) == {"script_content", "script_name", "model_name", "requirements"}


def test_requirements_file_refuses_pip_options_and_loops(tmp_path):
    (tmp_path / "opts.txt").write_text("--index-url https://example.org/simple\nnumpy\n")
    with pytest.raises(DeployArgumentError, match=r"opts\.txt:1: pip option '--index-url'"):
        read_requirements_file(tmp_path / "opts.txt")
    (tmp_path / "loop.txt").write_text("-r loop.txt\n")
    with pytest.raises(DeployArgumentError, match="includes itself"):
        read_requirements_file(tmp_path / "loop.txt")


# ---- the curl --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata, expected",
    [
        (
            {"input_example": {"columns": ["a", "b"], "data": [[1, 2]]}},
            {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}},
        ),
        ({"model": {"input_example": [{"a": 1}]}}, {"dataframe_records": [{"a": 1}]}),
        (
            {"input_example": {"a": [1, 3], "b": [2, 4]}},
            {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}},
        ),
        (
            {"signature": {"inputs": json.dumps([{"name": "x", "type": "double"}, {"name": "n", "type": "long"}])}},
            {"dataframe_split": {"columns": ["x", "n"], "data": [[0.0, 0]]}},
        ),
    ],
)
def test_example_body_uses_the_models_input(metadata, expected):
    assert example_body(metadata) == (expected, True)


@pytest.mark.parametrize(
    "metadata", [None, {}, {"signature": {"inputs": [{"type": "tensor"}]}}, {"input_example": "not json"}]
)
def test_example_body_falls_back_to_a_generic_body(metadata):
    assert example_body(metadata) == (GENERIC_BODY, False)


def test_curl_survives_the_shell():
    body = {"dataframe_records": [{"it's": 'a "quote" $HOME'}]}
    words = shlex.split(curl_command("http://127.0.0.1:8080/predict", body))
    assert words[:4] == ["curl", "-sS", "-X", "POST"] and words[4] == "http://127.0.0.1:8080/predict"
    assert json.loads(words[words.index("-d") + 1]) == body


class _Metadata(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # the name http.server's handler API requires
        self.send_response(200 if self.path == "/metadata" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_summary_of_a_served_model_prints_a_curl_with_its_input_example(monkeypatch):
    example = {"columns": ["sepal length (cm)"], "data": [[5.1]]}
    _Metadata.body = json.dumps({"model_version": "3", "input_example": example}).encode()
    server = HTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    captured = io.StringIO()
    monkeypatch.setattr(cli_app, "console", Console(file=captured, width=300, soft_wrap=True))
    view = {
        "deployment_id": "d1",
        "kind": "deploy",
        "status": "deployed",
        "model_name": "iris",
        "model_version": "3",
        "duration_seconds": 12.0,
        "inference_url": f"{base}/predict",
        "endpoints": {"metadata": f"{base}/metadata"},
        "commit": "abc123",
        "steps": [],
    }
    try:
        cli_app.summarise(MlopsClient(base), view)
    finally:
        server.shutdown()
    text = captured.getvalue()
    assert f"url    {base}/predict" in text and "deployed iris version 3" in text
    curl = next(line for line in text.splitlines() if line.startswith("curl "))
    words = shlex.split(curl)
    assert json.loads(words[words.index("-d") + 1]) == {"dataframe_split": example}


class _Endpoints(BaseHTTPRequestHandler):
    asked: ClassVar[list[str]] = []

    def do_GET(self):  # the name http.server's handler API requires
        type(self).asked.append(self.path)
        body = json.dumps(
            {
                "total": 2,
                "endpoints": [
                    {
                        "namespace": "models",
                        "endpoint": "fraud-prod",
                        "model_name": "fraud",
                        "version": "1",
                        "served": {"version": "1", "healthy": True, "url": "http://127.0.0.5"},
                    },
                    {"namespace": "models", "endpoint": "fraud-staging", "model_name": "fraud", "version": "2"},
                ],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_endpoints_command_asks_for_the_model_and_prints_one_row_per_endpoint(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Endpoints)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    captured = io.StringIO()
    monkeypatch.setattr(cli_app, "console", Console(file=captured, width=300, soft_wrap=True))
    try:
        with pytest.raises(SystemExit) as exited:
            cli_app.app(
                ["endpoints", "--model", "fraud", "--server", f"http://127.0.0.1:{server.server_port}"],
                standalone_mode=True,
            )
    finally:
        server.shutdown()
    assert exited.value.code == 0
    assert _Endpoints.asked == ["/mlops/endpoints?model=fraud"]
    rows = [line for line in captured.getvalue().splitlines() if "fraud-" in line]
    assert len(rows) == 2
    assert "http://127.0.0.5" in rows[0] and "yes" in rows[0]
    assert "http" not in rows[1]  # nothing served there yet: no URL, no health


# ---- events and progress ---------------------------------------------------------------------------


def _event(kind, data, event_id=None):
    return ServerSentEvent(kind, json.dumps(data), str(event_id) if event_id else None)


def test_parse_sse_reads_fields_comments_and_multiline_data():
    text = 'retry: 2000\n\n: keepalive\n\nid: 4\nevent: step\ndata: {"a":\ndata: 1}\n\nevent: end\ndata: {}\n\n'
    events = list(parse_sse(text.split("\n")))
    assert events == [ServerSentEvent("step", '{"a":\n1}', "4"), ServerSentEvent("end", "{}", None)]
    assert events[0].json() == {"a": 1}


def test_board_tracks_steps_durations_and_the_failed_step():
    board = StepBoard.from_view({"status": "pending", "steps": [{"name": "train"}, {"name": "register"}]})
    board.apply(_event("step", {"step": "train", "status": "running", "at": "2026-01-01T00:00:00+00:00"}, 1))
    board.apply(_event("log", {"step": "train", "line": "epoch 3"}, 2))
    assert board.steps["train"].status == "running" and board.steps["train"].last_log == "epoch 3"
    board.apply(
        _event(
            "step",
            {"step": "train", "status": "failed", "message": "boom", "at": "2026-01-01T00:00:02.500000+00:00"},
            3,
        )
    )
    assert board.steps["train"].duration == 2.5 and board.failed_step().message == "boom"
    assert board.steps["register"].status == "pending"
    board.apply(
        _event(
            "end",
            {
                "status": "failed",
                "steps": [{"name": "train", "status": "failed", "message": "boom", "duration_seconds": 2.4}],
            },
        )
    )
    assert board.status == "failed" and board.final_view["status"] == "failed" and board.steps["train"].duration == 2.4


def test_live_progress_draws_a_spinner_for_the_running_step_and_times_for_finished_ones():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100, color_system=None)
    board = StepBoard.from_view({"steps": [{"name": "train"}, {"name": "register"}, {"name": "build"}]})
    with LiveProgress(board, console) as progress:
        progress.update(_event("step", {"step": "train", "status": "running", "at": "2026-01-01T00:00:00+00:00"}, 1))
        progress.update(_event("step", {"step": "train", "status": "succeeded", "at": "2026-01-01T00:00:04+00:00"}, 2))
        progress.update(_event("step", {"step": "register", "status": "running", "at": "2026-01-01T00:00:04+00:00"}, 3))
        running = Console(file=io.StringIO(), width=100, color_system=None)
        running.print(progress.render())
        frame = running.file.getvalue()
    rows = {line.split()[1]: line.split() for line in frame.splitlines() if line.strip()}
    assert rows["train"] == ["✓", "train", "4.0s"]
    assert rows["register"][0] not in ("✓", "·", "✗")  # a spinner frame while it runs
    assert rows["build"] == ["·", "build"]
