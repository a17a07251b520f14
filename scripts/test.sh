#!/usr/bin/env bash
# Set up the machine (python env, services) and run the whole test suite; arguments go to pytest.
# Exits with pytest's code, except that "no tests collected" (5) is reported as a failure: a suite that
# silently shrank to nothing must not look green.
#
# Before pytest it runs the static checks (scripts/lint.sh: ruff format, ruff check, mypy); a failed check
# fails the run at once, before any service is started or test collected.
#
# MLOPS_TEST_SKIP_SETUP=1 skips the two set-up scripts (for re-runs on a machine known to be ready).
# MLOPS_TEST_SKIP_LINT=1 skips the static checks (for quick re-runs of a few tests).
# MLOPS_TEST_WORKERS=N sets the number of pytest-xdist workers (default 2; 0 = one process).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

log() { printf 'test.sh: %s\n' "$*" >&2; }

# Runs a command and logs how long it took; returns the command's status, so `timed x || ...` sees a failure.
timed() {
    local started=$SECONDS status=0
    "$@" || status=$?
    log "$(basename "$1") finished in $((SECONDS - started))s"
    return "$status"
}

if [ "${MLOPS_TEST_SKIP_SETUP:-0}" != 1 ]; then
    timed scripts/python-env.sh
fi

if [ "${MLOPS_TEST_SKIP_LINT:-0}" != 1 ]; then
    timed scripts/lint.sh || { log "FAILED: static checks (scripts/lint.sh) failed; see its log above"; exit 1; }
fi

if [ "${MLOPS_TEST_SKIP_SETUP:-0}" != 1 ]; then
    timed scripts/services.sh
fi

# Two workers (this machine has two cores): most of the suite waits on training subprocesses, Docker
# and git, so running two test files at once roughly halves the wall time. A file's tests stay on
# one worker (--dist loadfile) so module fixtures are built once. MLOPS_TEST_WORKERS=0 runs serially.
WORKERS="${MLOPS_TEST_WORKERS:-2}"
parallel=()
if [ "$WORKERS" != 0 ]; then
    parallel=(-n "$WORKERS" --dist loadfile)
fi

pytest_status=0
.venv/bin/python -m pytest "${parallel[@]}" "$@" || pytest_status=$?

if [ "$pytest_status" = 5 ]; then
    log "FAILED: pytest collected no tests (exit 5); check testpaths in pyproject.toml and the arguments: $*"
    exit 1
fi
exit "$pytest_status"
