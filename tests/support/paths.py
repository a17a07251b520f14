"""Where the repository and its sibling checkouts are."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT.parent / "shared"
CONTRACTS_DIR = SHARED_DIR / "contracts"
EXAMPLES_DIR = REPO_ROOT / "examples"
