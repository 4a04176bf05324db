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
# One UI worker is plenty locally, and MLflow's job runner (GenAI scorers, trace archival: unused
# by artsim) would start ~8 more processes that each import mlflow: on a 2-core machine the UI
# then takes ~50 s instead of ~15 s to answer. Either can be set back from the environment.
MLFLOW_WORKERS="${MLFLOW_WORKERS:-1}"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

pids=()
stop() {
  for pid in "${pids[@]}"; do kill -INT -- "-$pid" 2>/dev/null || true; done
  wait || true
}
trap stop EXIT INT TERM

# each server in its own session and process group, so one signal stops it and all its children.
# `env --default-signal=INT` because a non-interactive bash starts `&` commands with SIGINT
# ignored, and `dagster dev` maps SIGTERM onto its SIGINT handler: without it neither signal
# stops Dagster (Ctrl-C would leave the webserver and daemon running).
setsid env --default-signal=INT .venv/bin/mlflow ui --backend-store-uri "$MLFLOW_URI" --default-artifact-root "$ARTSIM_HOME/mlflow/artifacts" \
  --host 127.0.0.1 --port "$MLFLOW_PORT" --workers "$MLFLOW_WORKERS" &
pids+=($!)
setsid env --default-signal=INT .venv/bin/dagster dev -h 127.0.0.1 -p "$DAGSTER_PORT" &
pids+=($!)
echo "Dagster UI: http://127.0.0.1:$DAGSTER_PORT   MLflow UI: http://127.0.0.1:$MLFLOW_PORT   (Ctrl-C stops both)"
wait -n
