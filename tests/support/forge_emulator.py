"""Small but real HTTP servers that speak the slice of each forge's REST API the adapters use.

Each emulator runs under uvicorn on 127.0.0.1, records every request exactly as it arrived (raw
path, query, headers, JSON body) and answers like the real forge does, including its way of
saying "that pull request already exists" and its authentication errors.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.ports import free_port

TOKEN = "forge-T0ken-abcdef0123456789"


@dataclass
class Recorded:
    method: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


@dataclass
class ForgeEmulator:
    kind: str
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    pulls: dict[int, dict] = field(default_factory=dict)
    fail_next: list[tuple[int, dict, dict]] = field(default_factory=list)  # (status, body, headers)
    hide_from_next_list: int = 0  # simulates a pull request opened by someone else after our lookup

    def reset(self) -> None:
        self.requests.clear()
        self.pulls.clear()
        self.fail_next.clear()
        self.hide_from_next_list = 0

    def sent(self, method: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method]

    def add_pull(self, head: str, base: str = "main", state: str = "open", merged: bool = False) -> dict:
        number = len(self.pulls) + 1
        state = "closed" if merged else state  # a merged pull request is closed on every forge
        self.pulls[number] = {
            "number": number,
            "head": head,
            "base": base,
            "state": state,
            "merged": merged,
            "title": "t",
            "body": "b",
        }
        return self.pulls[number]


def _github_like(app: FastAPI, emulator: ForgeEmulator, prefix: str, web: str) -> None:
    def shape(pull: dict, full: bool) -> dict:
        merged = pull["merged"]
        shaped = {
            "number": pull["number"],
            "html_url": f"{web}/pull/{pull['number']}",
            "state": "closed" if merged or pull["state"] != "open" else "open",
            "merged_at": "2024-05-01T10:00:00Z" if merged else None,
            "head": {"ref": pull["head"], "label": f"acme:{pull['head']}"},
            "base": {"ref": pull["base"]},
            "title": pull["title"],
        }
        if full:
            shaped["merged"] = merged  # only the single-pull endpoint has it, like the real API
        return shaped

    @app.get(prefix + "/repos/{owner}/{repo}/pulls")
    def list_pulls(owner: str, repo: str, request: Request):
        query = request.query_params
        pulls = [p for p in emulator.pulls.values() if p["state"] == "open" and not p["merged"]]
        if emulator.kind == "github" and "head" in query:
            pulls = [p for p in pulls if f"{owner}:{p['head']}" == query["head"]]
        if emulator.hide_from_next_list:
            emulator.hide_from_next_list -= 1
            pulls = []
        if emulator.kind == "gitea":
            page, limit = int(query.get("page", 1)), int(query.get("limit", 30))
            pulls = pulls[(page - 1) * limit : page * limit]
        return [shape(p, full=emulator.kind == "gitea") for p in pulls]

    @app.post(prefix + "/repos/{owner}/{repo}/pulls")
    async def create_pull(owner: str, repo: str, request: Request):
        body = await request.json()
        if any(p["head"] == body["head"] and p["state"] == "open" for p in emulator.pulls.values()):
            if emulator.kind == "github":
                return JSONResponse(
                    {
                        "message": "Validation Failed",
                        "errors": [{"message": f"A pull request already exists for {owner}:{body['head']}."}],
                    },
                    422,
                )
            return JSONResponse({"message": "pull request already exists for these targets"}, 409)
        pull = emulator.add_pull(body["head"], body["base"])
        pull.update(title=body["title"], body=body["body"])
        return JSONResponse(shape(pull, full=True), 201)

    @app.get(prefix + "/repos/{owner}/{repo}/pulls/{number}")
    def get_pull(owner: str, repo: str, number: int):
        if number not in emulator.pulls:
            return JSONResponse({"message": "Not Found"}, 404)
        return shape(emulator.pulls[number], full=True)

    @app.patch(prefix + "/repos/{owner}/{repo}/pulls/{number}")
    async def update_pull(owner: str, repo: str, number: int, request: Request):
        # "Update a pull request": state "open" or "closed"; a merged one cannot change (GitHub 422).
        if number not in emulator.pulls:
            return JSONResponse({"message": "Not Found"}, 404)
        body = await request.json()
        pull = emulator.pulls[number]
        if body.get("state") not in (None, "open", "closed"):
            return JSONResponse({"message": "Validation Failed"}, 422)
        if pull["merged"] and body.get("state") == "open":
            return JSONResponse({"message": "Validation Failed"}, 422)
        if body.get("state"):
            pull["state"] = body["state"]
        return shape(pull, full=True)


def _gitlab(app: FastAPI, emulator: ForgeEmulator, web: str) -> None:
    def shape(mr: dict) -> dict:
        state = "merged" if mr["merged"] else ("opened" if mr["state"] == "open" else "closed")
        return {
            "id": 1000 + mr["number"],
            "iid": mr["number"],
            "web_url": f"{web}/-/merge_requests/{mr['number']}",
            "state": state,
            "source_branch": mr["head"],
            "target_branch": mr["base"],
            "title": mr["title"],
        }

    @app.get("/api/v4/projects/{project:path}/merge_requests/{iid}")
    def get_mr(project: str, iid: int):
        if iid not in emulator.pulls:
            return JSONResponse({"message": "404 Not found"}, 404)
        return shape(emulator.pulls[iid])

    @app.put("/api/v4/projects/{project:path}/merge_requests/{iid}")
    async def update_mr(project: str, iid: int, request: Request):
        # "Update MR": state_event "close" or "reopen".
        if iid not in emulator.pulls:
            return JSONResponse({"message": "404 Not found"}, 404)
        body = await request.json()
        event = body.get("state_event")
        if event not in (None, "close", "reopen"):
            return JSONResponse({"error": "state_event does not have a valid value"}, 400)
        mr = emulator.pulls[iid]
        if event and not mr["merged"]:
            mr["state"] = "closed" if event == "close" else "open"
        return shape(mr)

    @app.get("/api/v4/projects/{project:path}/merge_requests")
    def list_mrs(project: str, request: Request):
        query = request.query_params
        mrs = [
            m
            for m in emulator.pulls.values()
            if shape(m)["state"] == query.get("state", "opened") and m["head"] == query.get("source_branch", m["head"])
        ]
        if emulator.hide_from_next_list:
            emulator.hide_from_next_list -= 1
            mrs = []
        return [shape(m) for m in mrs]

    @app.post("/api/v4/projects/{project:path}/merge_requests")
    async def create_mr(project: str, request: Request):
        body = await request.json()
        if any(
            m["head"] == body["source_branch"] and m["state"] == "open" and not m["merged"]
            for m in emulator.pulls.values()
        ):
            return JSONResponse({"message": ["Another open merge request already exists for this source branch"]}, 409)
        mr = emulator.add_pull(body["source_branch"], body["target_branch"])
        mr.update(title=body["title"], body=body["description"])
        return JSONResponse(shape(mr), 201)


def build_app(emulator: ForgeEmulator) -> FastAPI:
    app = FastAPI()
    expected_auth = {
        "github": ("authorization", f"Bearer {TOKEN}", {"message": "Bad credentials"}),
        "gitea": ("authorization", f"token {TOKEN}", {"message": "token is required"}),
        "gitlab": ("private-token", TOKEN, {"message": "401 Unauthorized"}),
    }[emulator.kind]

    @app.middleware("http")
    async def record_and_authenticate(request: Request, call_next):
        body = await request.body()
        emulator.requests.append(
            Recorded(
                method=request.method,
                raw_path=request.scope["raw_path"].decode(),
                query=dict(request.query_params),
                headers={k.lower(): v for k, v in request.headers.items()},
                json=json.loads(body) if body else None,
            )
        )
        if emulator.fail_next:
            status, payload, headers = emulator.fail_next.pop(0)
            return JSONResponse(payload, status, headers=headers)
        header, value, refusal = expected_auth
        if request.headers.get(header) != value:
            return JSONResponse(refusal, 401)
        return await call_next(request)

    web = f"http://forge.example/{emulator.kind}/acme/gitops"
    if emulator.kind == "gitlab":
        _gitlab(app, emulator, web)
    else:
        _github_like(app, emulator, "/api/v1" if emulator.kind == "gitea" else "", web)
    return app


class ServerThread:
    def __init__(self, app: FastAPI) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("forge emulator did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"
