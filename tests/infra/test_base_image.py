"""The base image of runtime images can host a virtual environment (Debian's python is PEP 668 managed).

When scripts/make-base-image.sh built it (Docker Hub is unreachable here), it must also trust the host's
CA bundle, because pip inside image builds goes through an intercepting proxy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import docker
import pytest

from tests.support.availability import require

pytestmark = pytest.mark.docker

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILT_BY_SCRIPT_MARKER = "scripts/make-base-image.sh"
SCRIPT_HINT = "remove the pulled image and run `scripts/services.sh`, which builds it with debootstrap"

# One container run gathers every fact the tests check: starting containers is the slow part.
PROBE = r"""
set -e
python3 -m venv /opt/venv
pip_version="$(/opt/venv/bin/pip --version)"
python - <<'PY' "$pip_version"
import hashlib, json, os, shutil, sys
bundle = "/etc/ssl/certs/ca-certificates.crt"
print(json.dumps({
    "python_version": list(sys.version_info[:2]),
    "venv_pip": sys.argv[1],
    "python_on_path": shutil.which("python"),
    "ca_bundle_sha256": hashlib.sha256(open(bundle, "rb").read()).hexdigest() if os.path.exists(bundle) else None,
    "apt_lists": [name for name in os.listdir("/var/lib/apt/lists") if name not in ("partial", "lock", "auxfiles")],
    "man_pages": os.listdir("/usr/share/man") if os.path.isdir("/usr/share/man") else [],
}))
PY
"""


@pytest.fixture(scope="module")
def engine(base_image):
    """Module-scoped client (the shared docker_client is per test); base_image already required the engine."""
    client = docker.from_env(timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="module")
def image_facts(engine, base_image) -> dict:
    output = engine.containers.run(base_image, ["sh", "-c", PROBE], remove=True, network_mode="none")
    return json.loads(output.decode().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def built_by_script(engine, base_image) -> bool:
    return BUILT_BY_SCRIPT_MARKER in (engine.images.get(base_image).attrs.get("Comment") or "")


def test_base_image_runs_python_3_11(image_facts):
    assert image_facts["python_version"] == [3, 11]


def test_a_venv_in_the_base_image_has_pip(image_facts):
    assert image_facts["venv_pip"].startswith("pip ")
    assert "/opt/venv/" in image_facts["venv_pip"]


def test_python_command_exists(image_facts):
    assert image_facts["python_on_path"]


def test_debootstrapped_image_trusts_the_host_ca_bundle(image_facts, built_by_script):
    require(
        built_by_script,
        "a base image built by make-base-image.sh (a pulled one carries no host CA bundle)",
        SCRIPT_HINT,
    )
    assert HOST_CA_BUNDLE.is_file(), "the host CA bundle is what make-base-image.sh copies in"
    assert image_facts["ca_bundle_sha256"] == hashlib.sha256(HOST_CA_BUNDLE.read_bytes()).hexdigest()


def test_debootstrapped_image_carries_no_apt_lists_or_man_pages(image_facts, built_by_script):
    require(built_by_script, "a base image built by make-base-image.sh", SCRIPT_HINT)
    assert image_facts["apt_lists"] == []
    assert image_facts["man_pages"] == []
