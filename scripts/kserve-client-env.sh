#!/usr/bin/env bash
# Make (once) a separate virtual environment holding KServe's Python client, and print its python.
# kserve pins pandas<3 and protobuf<7, which would downgrade what MLflow runs with in the project's
# .venv, so the Open Inference Protocol conformance test drives it as a subprocess from here.
# Cached: the venv is reused while KSERVE_VERSION and this script are unchanged.
set -euo pipefail

KSERVE_VERSION="${KSERVE_VERSION:-0.21.0}"
CACHE_ROOT="${MLOPS_CLIENT_ENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops}"
SCRIPT_HASH="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)"
VENV_DIR="$CACHE_ROOT/kserve-client-$KSERVE_VERSION-$SCRIPT_HASH"
STAMP="$VENV_DIR/.installed"

log() { printf 'kserve-client-env: %s\n' "$*" >&2; }

export PATH="$HOME/.local/bin:$PATH"
# uv ignores the system trust store by default; PyPI is reached through a proxy whose CA is only there.
export UV_NATIVE_TLS="${UV_NATIVE_TLS:-1}"
if [ -z "${SSL_CERT_FILE:-}" ] && [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
fi
command -v uv >/dev/null || { log "uv not found (scripts/python-env.sh installs it)"; exit 1; }

if [ ! -f "$STAMP" ]; then
    log "creating $VENV_DIR with kserve==$KSERVE_VERSION"
    mkdir -p "$CACHE_ROOT"
    # Built beside the final path and renamed into place, so concurrent runs never see half a venv.
    BUILD_DIR="$(mktemp -d "$CACHE_ROOT/.kserve-client-build.XXXXXX")"
    trap 'rm -rf "$BUILD_DIR"' EXIT
    uv venv --quiet --relocatable --python 3.11 "$BUILD_DIR/venv" >&2
    uv pip install --quiet --python "$BUILD_DIR/venv/bin/python" "kserve==$KSERVE_VERSION" >&2
    touch "$BUILD_DIR/venv/.installed"
    if [ ! -f "$STAMP" ]; then
        rm -rf "$VENV_DIR"
        mv "$BUILD_DIR/venv" "$VENV_DIR" || [ -f "$STAMP" ]
    fi
fi
echo "$VENV_DIR/bin/python"
