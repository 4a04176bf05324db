#!/usr/bin/env bash
# `make dev`: the Dagster UI (http://127.0.0.1:3000) and the MLflow UI (http://127.0.0.1:5000)
# over the same $ARTSIM_HOME, on loopback only. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ARTSIM_HOME:=$PWD/.artsim}"
export ARTSIM_HOME DAGSTER_HOME="$PWD"
mkdir -p "$ARTSIM_HOME/mlflow/artifacts"
MLFLOW_URI="${MLFLOW_TRACKING_URI:-sqlite:///$ARTSIM_HOME/mlflow/mlflow.db}"
DAGSTER_PORT="${DAGSTER_PORT:-3000}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"

pids=()
stop() {
  for pid in "${pids[@]}"; do kill -INT -- "-$pid" 2>/dev/null || true; done
  wait || true
}
trap stop EXIT INT TERM

# each server in its own process group, so one signal stops it and all its children
setsid .venv/bin/mlflow ui --backend-store-uri "$MLFLOW_URI" --default-artifact-root "$ARTSIM_HOME/mlflow/artifacts" \
  --host 127.0.0.1 --port "$MLFLOW_PORT" &
pids+=($!)
setsid .venv/bin/dagster dev -h 127.0.0.1 -p "$DAGSTER_PORT" &
pids+=($!)
echo "Dagster UI: http://127.0.0.1:$DAGSTER_PORT   MLflow UI: http://127.0.0.1:$MLFLOW_PORT   (Ctrl-C stops both)"
wait -n
