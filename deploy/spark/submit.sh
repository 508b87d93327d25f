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
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
master="${SPARK_MASTER:-local[*]}"
deploy_mode=client
ship=venv
dry_run=0
confs=()

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --master) master="$2"; shift 2 ;;
    --deploy-mode) deploy_mode="$2"; shift 2 ;;
    --ship) ship="$2"; shift 2 ;;
    --conf) confs+=(--conf "$2"); shift 2 ;;
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

# babelsieve arguments: add --engine spark; in cluster mode ship the config file.
args=("$@")
has_engine=0
for a in "${args[@]}"; do
  case "$a" in --engine|--engine=*|-e) has_engine=1 ;; esac
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

for var in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_DEFAULT_REGION AWS_REGION AWS_ENDPOINT_URL \
           BABELSIEVE_CACHE; do
  if [ -n "${!var:-}" ]; then
    submit+=(--conf "spark.executorEnv.$var=${!var}")
    if [ "$deploy_mode" = cluster ]; then
      submit+=(--conf "spark.yarn.appMasterEnv.$var=${!var}" --conf "spark.kubernetes.driverEnv.$var=${!var}")
    fi
  fi
done

submit+=("${confs[@]}" "${files[@]}" "$here/driver.py" "${args[@]}")
run "${submit[@]}"
