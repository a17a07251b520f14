"""The pieces that fit a training environment to old pins: which requirements are exact pins, what a
pinned package depends on (from real distribution metadata), when a release was uploaded (from a
PEP 691 index over HTTP), and how the serving image's requirements take the trained versions."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from control_api.adapters.image_builder.docker_engine import runtime_key
from control_api.adapters.image_builder.requirements import runtime_requirements
from control_api.training.dependencies import dependency_closure, installed_versions
from control_api.training.environments import EnvironmentFit, environment_key, exact_pins
from control_api.training.release_dates import SIMPLE_JSON, ReleaseDates


def write_distribution(site_packages: Path, name: str, version: str, requires: list[str] = ()) -> None:
    dist_info = site_packages / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        *[f"Requires-Dist: {r}" for r in requires],
    ]
    (dist_info / "METADATA").write_text("\n".join(lines) + "\n")


@pytest.fixture
def site_packages(tmp_path) -> Path:
    root = tmp_path / "site-packages"
    write_distribution(
        root,
        "xgboost",
        "1.7.6",
        [
            "numpy",
            "scipy",
            'scikit-learn ; extra == "scikit-learn"',
            'pandas ; extra == "pandas"',
            'dask ; extra == "dask"',
        ],
    )
    write_distribution(root, "scipy", "1.16.0", ["numpy>=1.25"])
    write_distribution(root, "numpy", "2.3.0")
    write_distribution(root, "scikit-learn", "1.7.0", ["numpy", "scipy", "joblib", 'pytest ; extra == "tests"'])
    write_distribution(root, "joblib", "1.5.0")
    write_distribution(root, "pandas", "2.3.0", ["numpy", "python-dateutil", 'tzdata ; python_version < "3"'])
    write_distribution(root, "python-dateutil", "2.9.0", ["six"])
    write_distribution(root, "six", "1.17.0")
    write_distribution(root, "tzdata", "2025.1")
    return root


def test_exact_pins_are_single_equality_specifiers():
    assert exact_pins(["scikit-learn==1.3.0", "pandas>=1.5", "numpy==1.*", "xgboost===1.7.6", "scipy", "a==1,<2"]) == {
        "scikit-learn": "1.3.0",
        "xgboost": "1.7.6",
    }


def test_a_closure_follows_required_dependencies_and_takes_installed_optional_ones(site_packages):
    closures = dependency_closure(site_packages, ["xgboost", "pandas", "not-installed"])
    # dask is an extra that is not installed; scikit-learn and pandas are, so they are what xgboost imports.
    # Their own dependencies (joblib, python-dateutil) are theirs, not xgboost's.
    assert closures["xgboost"] == {"numpy", "scipy", "scikit-learn", "pandas"}
    # tzdata's marker is false here; six comes through python-dateutil.
    assert closures["pandas"] == {"numpy", "python-dateutil", "six"}
    assert "not-installed" not in closures
    assert installed_versions(site_packages)["scikit-learn"] == "1.7.0"


class SimpleIndex(BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, dict]] = {}

    def do_GET(self):
        page = self.pages.get(self.path)
        if page is None or self.headers.get("Accept") != SIMPLE_JSON:
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps(page).encode()
        self.send_response(200)
        self.send_header("Content-Type", SIMPLE_JSON)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def index_url():
    SimpleIndex.pages = {
        "/simple/scikit-learn/": {
            "meta": {"api-version": "1.1"},
            "files": [
                {"filename": "scikit-learn-1.3.0.tar.gz", "upload-time": "2023-06-30T07:40:00.000000Z"},
                {
                    "filename": "scikit_learn-1.3.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                    "upload-time": "2023-06-30T07:56:11.725659Z",
                },
                {
                    "filename": "scikit_learn-1.3.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                    "upload-time": "2023-09-18T00:00:00Z",
                },
                {"filename": "scikit-learn-1.2.2.tar.gz"},
            ],
        }
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), SimpleIndex)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    server.shutdown()
    server.server_close()


def test_a_release_is_as_old_as_its_last_uploaded_file(index_url):
    dates = ReleaseDates(index_url)
    assert dates.uploaded("Scikit_Learn", "1.3.0") == datetime(2023, 6, 30, 7, 56, 11, 725659, tzinfo=UTC)
    assert dates.uploaded("scikit-learn", "1.2.2") is None  # the index gives no time for it
    assert dates.uploaded("scikit-learn", "9.9") is None
    assert dates.uploaded("unknown-package", "1.0") is None


def test_every_fit_is_its_own_environment():
    requirements = ["mlflow==3.0.0", "scikit-learn==1.3.0"]
    plain = environment_key("3.11", requirements)
    dated = environment_key("3.11", requirements, EnvironmentFit(exclude_newer=(("numpy", "2023-06-30T07:56:11Z"),)))
    fallback = environment_key("3.11", requirements, EnvironmentFit().with_constraint("numpy<2"))
    assert len({plain, dated, fallback}) == 3
    fit = EnvironmentFit(("numpy<2",), (("scipy", "2023-06-30T07:56:11Z"),))
    assert EnvironmentFit.from_json(json.loads(json.dumps(fit.as_json()))) == fit


def test_the_serving_image_takes_the_trained_versions():
    model = "mlflow==3.1.0\nscikit-learn==1.3.0\nnumpy==1.25.0\n"
    server = "fastapi==0.165.0\npyyaml==6.0.3\n"
    trained = {
        "scikit-learn": "1.3.0",
        "numpy": "1.25.0",
        "scipy": "1.11.1",
        "joblib": "1.3.1",
        "PyYAML": "6.0.1",
        "mlflow": "3.1.0",
    }
    merged = runtime_requirements(model, server, "3.1.0", trained)
    # Named by a requirement: pinned to the trained version (over the server's own pin too).
    assert merged.lines == [
        "fastapi==0.165.0",
        "mlflow-skinny==3.1.0",
        "numpy==1.25.0",
        "pyyaml==6.0.1",
        "scikit-learn==1.3.0",
    ]
    # Only pulled in as dependencies: constrained, so whatever installs them installs these.
    assert merged.constraints == ["joblib==1.3.1", "scipy==1.11.1"]
    untrained = runtime_requirements(model, server, "3.1.0")
    assert untrained.constraints == []
    key = runtime_key("sha256:b", "3.11.2", merged.lines, "s", merged.constraints)
    assert key != runtime_key("sha256:b", "3.11.2", merged.lines, "s")
    assert runtime_key("sha256:b", "3.11.2", merged.lines, "s", []) == runtime_key(
        "sha256:b", "3.11.2", merged.lines, "s"
    )
