"""The docs say what the code does: the configuration reference is current, every error code is explained,
links resolve.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from control_api.api.errors import HTTP_CODES
from control_api.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CODE_LITERAL = re.compile(r"""\bcode\s?=\s?["']([a-z][a-z0-9_]*)["']""")
ERROR_RESPONSE_LITERAL = re.compile(r"""error_response\(\s*request,\s*\d{3},\s*["']([a-z][a-z0-9_]*)["']""")


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_config_docs", ROOT / "scripts" / "gen_config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_current():
    generated = _load_generator().render()
    on_disk = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert on_disk == generated, "docs/configuration.md is out of date: run `python scripts/gen_config_docs.py`"


def _documented_variables() -> dict[str, str]:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    return dict(re.findall(r"^\| `(MLOPS_[A-Z0-9_]+)` \| ([^|]+(?:\\\|[^|]+)*) \|", text, flags=re.M))


def _leaf_paths(model, prefix=()):
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            yield from _leaf_paths(annotation, (*prefix, name))
        else:
            yield (*prefix, name)


def test_every_setting_is_documented_under_the_name_pydantic_settings_reads(monkeypatch):
    documented = _documented_variables()
    expected = {"MLOPS_" + "__".join(part.upper() for part in path): path for path in _leaf_paths(Settings)}
    assert set(documented) == set(expected)
    # The documented names really configure the service (the prefix and delimiter are not just assumed).
    for variable, value, read in (
        ("MLOPS_MLFLOW__TRACKING_URI", "http://mlflow.example:5000", lambda s: s.mlflow.tracking_uri),
        ("MLOPS_TRAINING__TIMEOUT_SECONDS", "12.5", lambda s: s.training.timeout_seconds),
        ("MLOPS_API__ALLOWED_NAMESPACES", '["a","b"]', lambda s: s.api.allowed_namespaces),
    ):
        assert variable in documented
        monkeypatch.setenv(variable, value)
        assert str(read(Settings())) in (value, "['a', 'b']")


def _codes_in_code() -> set[str]:
    codes = set(HTTP_CODES.values()) | {"http_error"}
    for path in (ROOT / "control_api").rglob("*.py"):
        if "cli_user" in path.parts or "client" in path.parts:
            continue  # the CLI's own codes are not API answers
        text = path.read_text(encoding="utf-8")
        codes |= set(CODE_LITERAL.findall(text)) | set(ERROR_RESPONSE_LITERAL.findall(text))
    return codes


def test_troubleshooting_explains_every_error_code_the_api_can_return():
    codes = _codes_in_code()
    assert {
        "training_failed",
        "deployment_not_found",
        "validation_error",
        "unauthorized",
        "no_target",
    } <= codes  # the scan works
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z][a-z0-9_]*)`", text))
    missing = sorted(codes - documented)
    assert not missing, f"docs/troubleshooting.md does not explain: {missing}"


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_relative_links_resolve(page):
    text = (DOCS / page).read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (DOCS / target).resolve().exists(), f"{page} links to missing {target}"
