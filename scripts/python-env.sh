#!/usr/bin/env bash
# Make the project's virtual environment: .venv with Python 3.11 (via uv) and the project installed
# editable with its test extras. Idempotent and fast when nothing changed: the install is skipped while
# pyproject.toml is unchanged since the last successful install (MLOPS_FORCE_INSTALL=1 re-installs).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

PYTHON_VERSION="${MLOPS_PYTHON_VERSION:-3.11}"
VENV_DIR="$REPO_ROOT/.venv"
VENV_PYTHON="$VENV_DIR/bin/python"
# Lives inside .venv so that deleting the venv also forgets the install.
INSTALL_STAMP="$VENV_DIR/.mlops-install-stamp"

log() { printf 'python-env: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# uv is a Rust binary that ignores the system trust store by default; PyPI is reached through an
# intercepting proxy whose CA is only in the system bundle.
export UV_NATIVE_TLS="${UV_NATIVE_TLS:-1}"
if [ -z "${SSL_CERT_FILE:-}" ] && [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
fi

ensure_uv() {
    export PATH="$HOME/.local/bin:$PATH"
    command -v uv >/dev/null && return 0
    log "uv not found; installing it with pip (--user)"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        [ "$(id -u)" = 0 ] || die "neither uv nor pip is available; install python3-pip or uv"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip >&2; } \
            || die "could not install python3-pip"
    fi
    # Debian's system python is PEP 668 "externally managed"; a --user install of one self-contained
    # binary does not touch the system's packages, so overriding the guard is safe here.
    python3 -m pip install --user --quiet uv \
        || python3 -m pip install --user --quiet --break-system-packages uv \
        || die "pip could not install uv"
    command -v uv >/dev/null || die "uv was installed but is not on PATH ($HOME/.local/bin)"
}

venv_python_ok() {
    [ -x "$VENV_PYTHON" ] && "$VENV_PYTHON" -c "
import sys
want = tuple(int(part) for part in '$PYTHON_VERSION'.split('.'))
sys.exit(0 if sys.version_info[:len(want)] == want else 1)
" 2>/dev/null
}

requirements_fingerprint() {
    { cat pyproject.toml; uv --version; } | sha256sum | cut -d' ' -f1
}

ensure_uv

if ! venv_python_ok; then
    if [ -e "$VENV_DIR" ]; then
        log "$VENV_DIR is not a working Python $PYTHON_VERSION environment; recreating it"
        rm -rf "$VENV_DIR"
    fi
    uv venv --quiet --python "$PYTHON_VERSION" "$VENV_DIR" >&2 \
        || die "uv could not create a Python $PYTHON_VERSION venv (is python$PYTHON_VERSION installed?)"
fi

fingerprint="$(requirements_fingerprint)"
if [ "${MLOPS_FORCE_INSTALL:-0}" != 1 ] && [ -f "$INSTALL_STAMP" ] \
        && [ "$(cat "$INSTALL_STAMP")" = "$fingerprint" ] \
        && "$VENV_PYTHON" -c 'import control_api, pytest' 2>/dev/null; then
    log "up to date ($("$VENV_PYTHON" --version))"
    exit 0
fi

log "installing the project and its test extras into $VENV_DIR"
uv pip install --quiet --compile-bytecode --python "$VENV_PYTHON" -e '.[test]' >&2 || die "uv pip install failed"
printf '%s\n' "$fingerprint" >"$INSTALL_STAMP"
log "installed ($("$VENV_PYTHON" --version))"
