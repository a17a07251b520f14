#!/usr/bin/env bash
# The main job on the embedded defaults: set up the machine, start the control service, deploy the
# example training script and print a real prediction from the URL the deploy returns.
#
# State lives in .data/ (MLflow, journal, GitOps bare repo); the model keeps serving after this
# script ends. MLOPS_DEMO_PORT picks the control service port (default 8000).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
PORT="${MLOPS_DEMO_PORT:-8000}"
CONTROL="http://127.0.0.1:${PORT}"

scripts/python-env.sh
scripts/services.sh

mkdir -p .data
.venv/bin/mlops-control serve --host 127.0.0.1 --port "$PORT" >.data/control-service.log 2>&1 &
SERVICE_PID=$!
trap 'kill "$SERVICE_PID" 2>/dev/null || true; wait "$SERVICE_PID" 2>/dev/null || true' EXIT

for _ in $(seq 1 120); do
    if curl -fsS "$CONTROL/health" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$SERVICE_PID" 2>/dev/null; then
        echo "demo.sh: the control service exited; see .data/control-service.log" >&2
        tail -20 .data/control-service.log >&2
        exit 1
    fi
    sleep 0.5
done

.venv/bin/python scripts/deploy_example.py "$CONTROL" "$@"
echo "demo.sh: the model keeps serving; the control service log is .data/control-service.log"
