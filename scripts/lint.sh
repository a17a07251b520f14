#!/usr/bin/env bash
# Static checks: ruff's formatter (check only, it never rewrites) and ruff's linter on the packages and on
# the tests, benchmarks, scripts and examples; mypy on the packages. All are configured in pyproject.toml.
# Every check runs even when an earlier one failed, so one run lists every problem; the exit code is
# non-zero when any of them failed. Needs the virtual environment made by scripts/python-env.sh.
#
# To fix what the formatter and the linter report: .venv/bin/ruff format <files> && .venv/bin/ruff check --fix <files>
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

# The packages that ship: the control service, the manifest renderer and the model server template.
PACKAGES=(control_api renderer serving_template)
# The Python that does not ship: ruff checks it as it checks the packages; mypy does not.
OTHER_PYTHON=(tests bench scripts examples)

log() { printf 'lint.sh: %s\n' "$*" >&2; }

for tool in ruff mypy; do
    if [ ! -x ".venv/bin/$tool" ]; then
        log "FAILED: .venv/bin/$tool is missing; run scripts/python-env.sh (it installs the test extras)"
        exit 1
    fi
done

failed=()

run_check() {
    local name=$1
    shift
    log "$name: $*"
    if "$@"; then
        log "$name: passed"
    else
        log "$name: FAILED"
        failed+=("$name")
    fi
}

run_check "ruff format" .venv/bin/ruff format --check "${PACKAGES[@]}" "${OTHER_PYTHON[@]}"
run_check "ruff check" .venv/bin/ruff check "${PACKAGES[@]}" "${OTHER_PYTHON[@]}"
# mypy takes its file list (the packages only) and strictness from [tool.mypy] in pyproject.toml.
run_check "mypy" .venv/bin/mypy

if [ "${#failed[@]}" -gt 0 ]; then
    log "FAILED: ${failed[*]}"
    exit 1
fi
log "all static checks passed"
