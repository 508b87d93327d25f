#!/usr/bin/env bash
# Create (or reuse) a virtual environment with Apache Airflow 3 for the DAG and its tests.
#
#   deploy/airflow/install_airflow.sh [VENV_DIR]      prints VENV_DIR on its last line
#
# Airflow pins many libraries (SQLAlchemy, pydantic, ...) that conflict with babelsieve's, so it
# gets its own environment. babelsieve is NOT installed into it: the DAG runs `babelsieve` as a
# subprocess (BABELSIEVE_BIN), so the two environments never share a dependency.
#
# VENV_DIR defaults to $BABELSIEVE_AIRFLOW_VENV, else ~/.cache/babelsieve/airflow-venv. An
# existing complete environment with Airflow 3 is reused (it takes ~2 minutes to build).
# AIRFLOW_SPEC (default "apache-airflow==3.*") and AIRFLOW_PYTHON (default python3) override.
set -euo pipefail
# `airflow version` would otherwise create ~/airflow
if [ -z "${AIRFLOW_HOME:-}" ]; then
  AIRFLOW_HOME="$(mktemp -d)"
  export AIRFLOW_HOME
  trap 'rm -rf "$AIRFLOW_HOME"' EXIT
fi
venv="${1:-${BABELSIEVE_AIRFLOW_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/babelsieve/airflow-venv}}"
spec="${AIRFLOW_SPEC:-apache-airflow==3.*}"
python="${AIRFLOW_PYTHON:-python3}"
marker="$venv/.babelsieve-complete"

if [ -f "$marker" ] && [ "$(cat "$marker")" = "$spec" ] \
   && version="$("$venv/bin/airflow" version 2>/dev/null | tail -n 1)" && [[ "$version" == 3.* ]]; then
  echo "reusing $venv (Airflow $version)" >&2
  echo "$venv"
  exit 0
fi

echo "creating $venv with $spec" >&2
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
start=$(date +%s)
"$python" -m venv "$venv"
log="$venv/install.log"
if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install "$spec" >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "pip install $spec failed (full log: $log)" >&2
  exit 1
fi
"$venv/bin/airflow" version >/dev/null 2>&1 || { echo "airflow does not start in $venv" >&2; exit 1; }
echo "$spec" > "$marker"   # written last: a half-built environment is never reused
echo "Airflow $("$venv/bin/airflow" version 2>/dev/null | tail -n 1) installed in $(( $(date +%s) - start ))s" >&2
echo "$venv"
