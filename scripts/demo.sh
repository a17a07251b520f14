#!/usr/bin/env bash
# The main job on the embedded defaults: set up the machine, start the control service, deploy the
# example training script and print a real prediction from the URL the deploy returns.
#
# State lives in .data/ (MLflow, journal, GitOps bare repo). The control service keeps running on
# 127.0.0.1:$MLOPS_DEMO_PORT (default 8000) so the `mlops` CLI can be used next; a second run reuses it.
# MLOPS_DEMO_STOP=1 stops the service at the end.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
PORT="${MLOPS_DEMO_PORT:-8000}"
CONTROL="http://127.0.0.1:${PORT}"
PID_FILE=.data/control-service.pid

scripts/python-env.sh
scripts/services.sh

mkdir -p .data
if curl -fsS "$CONTROL/health" >/dev/null 2>&1; then
    echo "demo.sh: using the control service already running at $CONTROL"
else
    setsid .venv/bin/mlops-control serve --host 127.0.0.1 --port "$PORT" >>.data/control-service.log 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 120); do
        if curl -fsS "$CONTROL/health" >/dev/null 2>&1; then break; fi
        if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
            echo "demo.sh: the control service exited; see .data/control-service.log" >&2
            tail -20 .data/control-service.log >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "demo.sh: control service started at $CONTROL (pid $(cat "$PID_FILE"), log .data/control-service.log)"
fi

status=0
.venv/bin/python scripts/deploy_example.py "$CONTROL" "$@" || status=$?

if [ "${MLOPS_DEMO_STOP:-0}" = 1 ] && [ -f "$PID_FILE" ]; then
    kill "$(cat "$PID_FILE")" 2>/dev/null || true
    rm -f "$PID_FILE"
    echo "demo.sh: control service stopped"
else
    echo "demo.sh: the control service keeps running at $CONTROL; try: .venv/bin/mlops status"
    echo "demo.sh: stop it with: kill \$(cat $PID_FILE)"
fi
exit "$status"
