"""One real HTTP server per forge kind (see forge_emulator), shared by a test module, reset per test."""

from __future__ import annotations

import pytest

from tests.support.forge_emulator import ForgeEmulator, ServerThread, build_app

API_ROOTS = {"github": "", "gitea": "/api/v1", "gitlab": "/api/v4"}


@pytest.fixture(scope="module", params=["github", "gitlab", "gitea"])
def running_forge(request):
    emulator = ForgeEmulator(kind=request.param)
    with ServerThread(build_app(emulator)) as server:
        emulator.url = f"http://127.0.0.1:{server.port}{API_ROOTS[request.param]}"
        yield emulator


@pytest.fixture
def forge_server(running_forge) -> ForgeEmulator:
    running_forge.reset()
    return running_forge
