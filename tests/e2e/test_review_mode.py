"""Review mode: a branch and a pull request per deploy; the deploy continues once the change is merged."""

from __future__ import annotations

import subprocess
import time

import httpx

from tests.control.conftest import example_request
from tests.forge.forge_emulator import TOKEN, ForgeEmulator, ServerThread, build_app


def _git(*args, cwd=None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_pull_request_then_merge_completes_the_deploy(make_e2e_client, tmp_path):
    emulator = ForgeEmulator(kind="github")
    with ServerThread(build_app(emulator)) as server:
        client = make_e2e_client(
            git={"review_mode": True},
            forge={"kind": "github", "api_url": f"http://127.0.0.1:{server.port}", "repository": "acme/gitops",
                   "token": TOKEN, "merge_poll_seconds": 0.3},
        )
        answer = client.post("/mlops/deploy", json=example_request("iris-review")).json()
        assert answer["status"] == "awaiting_review", answer
        assert answer["pull_request_url"]
        created = [r for r in emulator.sent("POST") if r.raw_path == "/repos/acme/gitops/pulls"]
        assert len(created) == 1
        pr = created[0].json
        assert pr["base"] == "main" and pr["head"].startswith("mlops/deploy-iris-review-v1-")
        assert pr["title"] == "deploy iris-review v1"
        assert "iris-review" in pr["body"] and "First deployment" in pr["body"]
        assert created[0].headers["authorization"] == f"Bearer {TOKEN}"

        bare = tmp_path / "data" / "gitops.git"
        assert "Deployment-Id" not in _git("--git-dir", str(bare), "log", "main", "--format=%B")
        # A reviewer merges the pull request (a merge commit, as the forge's button would make).
        work = tmp_path / "reviewer"
        _git("clone", "--quiet", bare.as_uri(), str(work))
        _git("-c", "user.name=reviewer", "-c", "user.email=r@localhost", "merge", "--no-ff", "--quiet",
             f"origin/{pr['head']}", "-m", "Merge pull request #1", cwd=work)
        _git("push", "--quiet", "origin", "HEAD:main", cwd=work)

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            body = client.get(f"/mlops/deployments/{answer['deployment_id']}").json()
            if body["status"] in ("deployed", "failed", "timed_out"):
                break
            time.sleep(0.5)
        assert body["status"] == "deployed", body
        assert body["commit"] == _git("rev-parse", "HEAD", cwd=work).strip() or body["commit"] in _git(
            "rev-list", "main", cwd=work
        )
        assert httpx.get(body["endpoints"]["health"], timeout=10).status_code == 200
