"""The ``mlops`` command against a real service process: progress, --json, exit codes, credentials."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.support.cli import API_KEY, json_out, run_mlops
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(900)

EXAMPLE = "examples/train_random_forest.py"


@pytest.fixture
def failing_script(tmp_path):
    path = tmp_path / "train_fails.py"
    path.write_text(
        textwrap.dedent("""
        import sys
        print("reading the data set")
        sys.exit("the data set is empty")
    """)
    )
    return path


def test_deploy_shows_each_step_then_the_model_and_the_other_commands_see_it(service, home, cli_env):
    result = run_mlops(["deploy", EXAMPLE, "--model-name", "iris-cli", "--requirement", "scikit-learn"], home, cli_env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    marks = [
        "[train] running",
        "[train] succeeded in",
        "[register] running",
        "[register] succeeded in",
        "registered iris-cli version 1",
    ]
    positions = [out.find(mark) for mark in marks]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), out
    assert "no serving target" in out  # target none: no URL and no curl to print
    assert "curl" not in out

    page = json_out(run_mlops(["deployments", "--json"], home, cli_env))
    newest = page["items"][0]
    assert (newest["model_name"], newest["status"], newest["model_version"]) == ("iris-cli", "registered", "1")
    deployment_id = newest["deployment_id"]
    assert deployment_id in out

    one = run_mlops(["deployments", deployment_id, "--json"], home, cli_env)
    assert one.returncode == 0 and json_out(one)["steps"][0]["name"] == "train"
    human = run_mlops(["deployments", deployment_id], home, cli_env)
    assert human.returncode == 0 and "register" in human.stdout and "registered iris-cli version 1" in human.stdout

    events = run_mlops(["events", deployment_id, "--json"], home, cli_env)
    assert events.returncode == 0, events.stderr
    lines = [json.loads(line) for line in events.stdout.splitlines()]
    assert lines[-1]["event"] == "end" and lines[-1]["data"]["status"] == "registered"
    steps = [(line["data"]["step"], line["data"]["status"]) for line in lines if line["event"] == "step"]
    assert steps == [("train", "running"), ("train", "succeeded"), ("register", "running"), ("register", "succeeded")]

    model = json_out(run_mlops(["models", "iris-cli", "--json"], home, cli_env))
    assert [v["version"] for v in model["versions"]] == ["1"] and "accuracy" in model["versions"][0]["metrics"]
    listing = run_mlops(["models"], home, cli_env)
    assert listing.returncode == 0 and "iris-cli" in listing.stdout


def test_failing_script_exits_1_with_the_step_message_and_json_says_failed(service, home, cli_env, failing_script):
    human = run_mlops(
        ["deploy", str(failing_script), "-m", "broken-cli", "--requirement", "scikit-learn"], home, cli_env
    )
    assert human.returncode == 1, human.stdout + human.stderr
    assert "[train] failed" in human.stdout and "the data set is empty" in human.stdout
    assert "failed at step train" in human.stderr and "the data set is empty" in human.stderr

    scripted = run_mlops(
        ["deploy", str(failing_script), "-m", "broken-cli", "--requirement", "scikit-learn", "--json"], home, cli_env
    )
    assert scripted.returncode == 1, scripted.stderr
    view = json_out(scripted)
    assert view["deployment_id"] and view["status"] == "failed"
    assert view["error"]["step"] == "train" and "the data set is empty" in view["error"]["message"]


def test_no_wait_returns_the_accepted_deployment_and_events_follows_it_to_its_exit_code(
    service, home, cli_env, failing_script
):
    accepted = run_mlops(
        ["deploy", str(failing_script), "-m", "later-cli", "--requirement", "scikit-learn", "--no-wait", "--json"],
        home,
        cli_env,
    )
    assert accepted.returncode == 0, accepted.stderr
    view = json_out(accepted)
    assert view["status"] not in ("failed", "registered") and view["model_name"] == "later-cli"
    followed = run_mlops(["events", view["deployment_id"]], home, cli_env)
    assert followed.returncode == 1, followed.stdout + followed.stderr
    assert "step   train failed" in followed.stdout and followed.stdout.rstrip().splitlines()[-1].split()[:2] == [
        "end",
        "failed",
    ]


def test_bad_model_name_exits_4_with_message_and_request_id(service, home, cli_env):
    result = run_mlops(["deploy", EXAMPLE, "--model-name", "Not_A_Label"], home, cli_env)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "DNS-1123" in result.stderr and "request id" in result.stderr and "model_name" in result.stderr
    scripted = run_mlops(["deploy", EXAMPLE, "--model-name", "Not_A_Label", "--json"], home, cli_env)
    assert scripted.returncode == 4
    error = json_out(scripted)["error"]
    assert error["status"] == 422 and error["code"] == "validation_error" and len(error["request_id"]) >= 8


def test_unreachable_server_exits_3(home):
    nobody = f"http://127.0.0.1:{free_port()}"
    result = run_mlops(["status", "--server", nobody], home)
    assert result.returncode == 3 and "cannot reach the control service" in result.stderr
    scripted = run_mlops(["--server", nobody, "deployments", "--json"], home)
    assert scripted.returncode == 3 and json_out(scripted)["error"]["code"] == "unreachable"


def test_missing_api_key_is_refused_with_exit_4(service, home):
    result = run_mlops(["deployments", "--server", service.url], home)
    assert result.returncode == 4 and "unauthorized" in result.stderr


def test_server_and_key_come_from_the_config_file_and_flags_win(service, home):
    config = home / ".config" / "mlops" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'server = "{service.url}"\napi_key = "{API_KEY}"\n')
    status = run_mlops(["status", "--json"], home)
    assert status.returncode == 0, status.stderr
    assert json_out(status)["components"]["journal"]["status"] == "healthy"

    config.write_text(f'server = "http://127.0.0.1:{free_port()}"\napi_key = "{API_KEY}"\n')
    assert run_mlops(["status"], home).returncode == 3
    assert run_mlops(["status", "--server", service.url], home).returncode == 0
    assert run_mlops(["status"], home, {"MLOPS_SERVER": service.url}).returncode == 0
    assert run_mlops(["status", "--server", service.url, "--api-key", "mlk_wrong"], home).returncode == 4

    config.write_text("server = [not toml\n")
    broken = run_mlops(["status"], home)
    assert broken.returncode == 2 and "config.toml" in broken.stderr


def test_usage_errors_exit_2(service, home, cli_env, tmp_path):
    assert run_mlops(["deploy", EXAMPLE], home, cli_env).returncode == 2  # --model-name missing
    bad_env = run_mlops(["deploy", EXAMPLE, "-m", "x", "--env", "NOVALUE"], home, cli_env)
    assert bad_env.returncode == 2 and "KEY=VALUE" in bad_env.stderr
    missing = run_mlops(["deploy", str(tmp_path / "nope.py"), "-m", "x"], home, cli_env)
    assert missing.returncode == 2 and "nope.py" in missing.stderr


def test_lifecycle_commands_report_the_servers_refusal(service, home, cli_env):
    result = run_mlops(["rollback", "iris-cli", "--to", "1", "--json"], home, cli_env)
    assert result.returncode == 4
    assert json_out(result)["error"]["code"] == "no_target"
    version = run_mlops(["deploy-version", "iris-cli", "1"], home, cli_env)
    assert version.returncode == 4 and "target 'none'" in version.stderr
    undeploy = run_mlops(["undeploy", "iris-cli"], home, cli_env)
    assert undeploy.returncode == 4 and "target 'none'" in undeploy.stderr
