#!/bin/bash
# Submit the babelsieve *driver* as a Slurm job, for clusters where login nodes may not run
# long-lived processes. The driver needs one CPU and little memory: it plans each stage, submits
# it as a job array (`--engine slurm`), follows it and resubmits array tasks that Slurm killed.
# Compute nodes must be allowed to call sbatch (most clusters allow it; otherwise run the driver
# on a login node under tmux/screen, or use `--no-wait`, which submits the whole run at once).
#
#   sbatch deploy/slurm/sbatch-driver.sh configs/fineweb2.yaml \
#       --input s3://commoncrawl/crawl-data/CC-MAIN-2024-10/warc.paths.gz --shards 0:1000 \
#       --output /scratch/$USER/fw2/CC-MAIN-2024-10
#
# Arguments are passed to `babelsieve run` as they are. Edit the #SBATCH lines for your site
# (partition, account); the array jobs take theirs from the config's engine_options.slurm.
#SBATCH --job-name=babelsieve-driver
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --time=3-00:00:00
#SBATCH --output=babelsieve-driver-%j.log
#SBATCH --signal=B:INT@300
# ^ five minutes before the driver's own time limit Slurm sends SIGINT to this script: with
#   --cancel-on-interrupt below the arrays are cancelled, not orphaned; rerun to resume.
set -euo pipefail

# Site set-up, e.g.:  module load python/3.11 ; source "$HOME/venvs/babelsieve/bin/activate"
if [[ -n "${BABELSIEVE_ENV_SETUP:-}" ]]; then
    # shellcheck disable=SC1090
    source "$BABELSIEVE_ENV_SETUP"
fi

if [[ $# -eq 0 ]]; then
    echo "usage: sbatch $0 CONFIG --input ... --output ... [babelsieve run options]" >&2
    exit 2
fi

# In the background + wait: bash runs a trap only after a foreground child ends, so forward INT/TERM
# ourselves, then wait until the driver has cancelled its arrays and exited.
babelsieve run "$@" --engine slurm --wait --cancel-on-interrupt --no-progress &
child=$!
trap 'kill -INT "$child" 2>/dev/null' INT TERM
set +e
wait "$child"
status=$?
while kill -0 "$child" 2>/dev/null; do
    wait "$child"
    status=$?
done
exit "$status"
