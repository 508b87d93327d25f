#!/usr/bin/env bash
# Submit a babelsieve run to Spark with spark-submit, shipping the project with it.
#
#   deploy/spark/submit.sh [OPTIONS] [--] run CONFIG [babelsieve run options...]
#
# Example (standalone cluster, one snapshot, output on S3):
#   deploy/spark/submit.sh --master spark://spark-master:7077 -- \
#       run configs/fineweb2.yaml --input s3://commoncrawl/crawl-data/CC-MAIN-2024-10/warc.paths.gz \
#       --shards 0:1000 --output s3://my-bucket/babelsieve/CC-MAIN-2024-10 --no-progress
#
# Options:
#   --master URL        spark://HOST:7077 (standalone), yarn, k8s://https://API:6443, local[N]
#                       (default: $SPARK_MASTER, else local[*])
#   --deploy-mode MODE  client (default: the driver runs here) or cluster (the config file is
#                       shipped with --files and passed by its base name)
#   --ship MODE         venv (default): build the project wheel (pip wheel), install it into a
#                         virtual environment, pack it with venv-pack and ship it with
#                         --archives; executors need only the same OS and Python minor version
#                       none: ship nothing; driver and executors already have babelsieve
#                         installed (the deploy/docker image on Spark on Kubernetes; a node image)
#   --conf KEY=VALUE    extra Spark configuration (repeatable)
#   --dry-run           print the build steps and the spark-submit command, run nothing
#   -h, --help          this text
# "--engine spark" is added to the babelsieve arguments unless they name an engine.
#
# Environment:
#   SPARK_SUBMIT        spark-submit executable (default: spark-submit on PATH)
#   PYTHON              Python that builds the wheel/venv, and the driver's Python with
#                       --ship none (default: python3)
#   BUILD_DIR           build directory (default: deploy/spark/.build)
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_DEFAULT_REGION, AWS_REGION,
#   AWS_ENDPOINT_URL    forwarded to the executors (spark.executorEnv.*) when set. babelsieve
#                       reads S3 with s3fs (fsspec), not Hadoop's s3a: set credentials here or
#                       by an instance role; a non-AWS endpoint goes in the config's
#                       storage_options (client_kwargs.endpoint_url) or AWS_ENDPOINT_URL.
# Secrets never go on the spark-submit command line (ps shows it; --dry-run prints it): the
# credential variables above, and every `--set KEY=VALUE` of the babelsieve arguments whose key
# names a secret (key, secret, token, password, credentials, ...), are written to a properties
# file readable only by you (mode 600, with your spark-defaults.conf copied in, removed on exit)
# given by --properties-file; those --set overrides reach the driver as $BABELSIEVE_SECRET_SETS.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
master="${SPARK_MASTER:-local[*]}"
deploy_mode=client
ship=venv
dry_run=0
confs=()
secret_confs=()  # --conf KEY=VALUE whose key names a secret: properties file, not argv

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

secret_key() {  # does a dotted key hold credentials? The words of pipeline/core/config.py's is_secret_key,
  # for any part of it; all of storage_options too (a whole mapping may be given at once).
  local part
  [[ "$1" == storage_options* ]] && return 0
  IFS=. read -ra parts <<< "$1"
  for part in "${parts[@]}"; do
    part="$(printf '%s' "$part" | sed -E 's/([a-z0-9])([A-Z])/\1_\2/g' | tr '[:upper:]' '[:lower:]')"
    [[ "$part" =~ secret|passw|credential|private ]] && return 0
    [[ "$part" =~ (^|[^a-z])(key|token|auth|authorization|pwd|apikey)($|[^a-z]) ]] && return 0
  done
  return 1
}

props_escape() {  # a Java properties value: backslashes doubled, newlines as \n
  local v="${1//\\/\\\\}"
  printf '%s' "${v//$'\n'/\\n}"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --master) master="$2"; shift 2 ;;
    --deploy-mode) deploy_mode="$2"; shift 2 ;;
    --ship) ship="$2"; shift 2 ;;
    --conf) if secret_key "${2%%=*}"; then secret_confs+=("$2"); else confs+=(--conf "$2"); fi; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) break ;;
  esac
done

if [ $# -eq 0 ]; then
  echo "submit.sh: no babelsieve arguments (e.g. -- run configs/fineweb2.yaml --input ...); see --help" >&2
  exit 2
fi
case "$deploy_mode" in client|cluster) ;; *) echo "submit.sh: --deploy-mode must be client or cluster" >&2; exit 2 ;; esac
case "$ship" in venv|none) ;; *) echo "submit.sh: --ship must be venv or none" >&2; exit 2 ;; esac

python="${PYTHON:-python3}"
spark_submit="${SPARK_SUBMIT:-spark-submit}"
build="${BUILD_DIR:-$here/.build}"

run() {  # run a command, or print it with --dry-run
  if [ "$dry_run" = 1 ]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

# babelsieve arguments: add --engine spark; secret --set values leave argv; in cluster mode ship
# the config file.
args=()
secret_sets="${BABELSIEVE_SECRET_SETS:-}"  # e.g. from the Airflow DAG
[ -z "$secret_sets" ] || secret_sets+=$'\n'
has_engine=0
while [ $# -gt 0 ]; do
  a="$1"; shift
  case "$a" in
    --engine|--engine=*|-e) has_engine=1 ;;
  esac
  if [ "$a" = --set ] && [ $# -gt 0 ] && secret_key "${1%%=*}"; then
    secret_sets+="$1"$'\n'; shift; continue
  fi
  if [[ "$a" == --set=* ]] && secret_key "$(v="${a#--set=}"; echo "${v%%=*}")"; then
    secret_sets+="${a#--set=}"$'\n'; continue
  fi
  args+=("$a")
done
[ "$has_engine" = 1 ] || args+=(--engine spark)
files=()
if [ "$deploy_mode" = cluster ] && [ "${args[0]}" = run ] && [ "${#args[@]}" -gt 1 ] \
   && [[ "${args[1]}" == *.y*ml ]] && [ -f "${args[1]}" ]; then
  files=(--files "${args[1]}")
  args[1]="$(basename "${args[1]}")"
fi

submit=("$spark_submit" --master "$master" --deploy-mode "$deploy_mode" --name babelsieve)
submit+=(--conf spark.task.maxFailures=4 --conf spark.python.worker.reuse=true)

if [ "$ship" = venv ]; then
  # Always rebuild the wheel (seconds); rebuild the packed venv only when the wheel changed.
  run rm -rf "$build/dist"
  run "$python" -m pip wheel --no-deps --quiet -w "$build/dist" "$repo"
  pack="$build/babelsieve-venv.tar.gz"
  if [ "$dry_run" = 1 ]; then
    run "$python" -m venv "$build/venv"
    run "$build/venv/bin/pip" install --quiet "$build/dist/babelsieve-*.whl" venv-pack
    run "$build/venv/bin/venv-pack" --force -p "$build/venv" -o "$pack"
  else
    wheel="$(ls "$build"/dist/babelsieve-*.whl)"
    stamp="$(sha256sum "$wheel" | cut -d' ' -f1)"
    if [ ! -f "$pack" ] || [ "$(cat "$build/venv.stamp" 2>/dev/null)" != "$stamp" ]; then
      rm -rf "$build/venv" "$pack"
      "$python" -m venv "$build/venv"
      "$build/venv/bin/pip" install --quiet "$wheel" venv-pack
      "$build/venv/bin/venv-pack" --force -p "$build/venv" -o "$pack"
      echo "$stamp" > "$build/venv.stamp"
    fi
  fi
  submit+=(--archives "$pack#environment" --conf spark.pyspark.python=./environment/bin/python)
  if [ "$deploy_mode" = cluster ]; then
    submit+=(--conf spark.pyspark.driver.python=./environment/bin/python)
  else
    submit+=(--conf "spark.pyspark.driver.python=$build/venv/bin/python")
  fi
else
  py="$(command -v "$python" || echo "$python")"
  submit+=(--conf "spark.pyspark.python=${PYSPARK_PYTHON:-$py}" --conf "spark.pyspark.driver.python=$py")
fi

for var in AWS_DEFAULT_REGION AWS_REGION AWS_ENDPOINT_URL BABELSIEVE_CACHE; do
  if [ -n "${!var:-}" ]; then
    submit+=(--conf "spark.executorEnv.$var=${!var}")
    if [ "$deploy_mode" = cluster ]; then
      submit+=(--conf "spark.yarn.appMasterEnv.$var=${!var}" --conf "spark.kubernetes.driverEnv.$var=${!var}")
    fi
  fi
done

# Secrets: a mode-600 properties file (Spark's UI redacts names matching secret/token/key).
secret_props=()  # "spark.key=value" lines
for c in "${secret_confs[@]}"; do secret_props+=("${c%%=*}=$(props_escape "${c#*=}")"); done
add_secret() {  # add_secret VAR VALUE: to the executors, and to a cluster-mode driver
  secret_props+=("spark.executorEnv.$1=$(props_escape "$2")")
  if [ "$deploy_mode" = cluster ]; then
    secret_props+=("spark.yarn.appMasterEnv.$1=$(props_escape "$2")"
                   "spark.kubernetes.driverEnv.$1=$(props_escape "$2")")
  fi
}
for var in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN; do
  if [ -n "${!var:-}" ]; then add_secret "$var" "${!var}"; fi
done
if [ -n "$secret_sets" ]; then
  export BABELSIEVE_SECRET_SETS="$secret_sets"  # the client-mode driver inherits it
  if [ "$deploy_mode" = cluster ]; then
    secret_props+=("spark.yarn.appMasterEnv.BABELSIEVE_SECRET_SETS=$(props_escape "$secret_sets")"
                   "spark.kubernetes.driverEnv.BABELSIEVE_SECRET_SETS=$(props_escape "$secret_sets")")
  fi
fi
if [ "${#secret_props[@]}" -gt 0 ]; then
  if [ "$dry_run" = 1 ]; then
    props="<properties file, mode 600>"
    printf '# %s (secrets redacted):\n' "$props"
    for p in "${secret_props[@]}"; do printf '#   %s=<redacted>\n' "${p%%=*}"; done
  else
    props="$(umask 077 && mktemp "${TMPDIR:-/tmp}/babelsieve-spark.XXXXXX.properties")"
    trap 'rm -f "$props"' EXIT
    # --properties-file replaces spark-defaults.conf on Spark < 4: copy it in first (ours win).
    defaults="${SPARK_CONF_DIR:-${SPARK_HOME:-}/conf}/spark-defaults.conf"
    if [ -f "$defaults" ]; then cat "$defaults" >> "$props"; echo >> "$props"; fi
    printf '%s\n' "${secret_props[@]}" >> "$props"
  fi
  submit+=(--properties-file "$props")
fi

submit+=("${confs[@]}" "${files[@]}" "$here/driver.py" "${args[@]}")
run "${submit[@]}"
