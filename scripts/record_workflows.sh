#!/usr/bin/env bash
# Records what a newcomer sees: clones the current commit into a temporary directory,
# sets it up from scratch with `bash run.sh setup` (empty pip cache), runs `dvc repro` at
# the committed params, then the workflows of docs/experiments.md, and writes everything
# they print, with the CPU, the commit, the date and the elapsed times, to one log:
#
#   bash scripts/record_workflows.sh docs/workflows.log
#
# The excerpts in README.md and docs/experiments.md are copied from that log. It takes
# about 10 minutes on a 2-core machine (most of it the install) and needs the network
# (PyPI) once, for the install.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=$(realpath -m "${1:?usage: bash scripts/record_workflows.sh LOG}")
SOURCE=$PWD
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export DVC_NO_ANALYTICS=1 PIP_CACHE_DIR=$WORK/pip-cache

# Prints a command as typed, then runs it, output and errors together.
show() {
    echo "\$ $*"
    eval "$@" 2>&1
}

# Like show, then the seconds it took.
timed() {
    local start=$SECONDS
    show "$@"
    echo "[took $((SECONDS - start)) s]"
}

{
    echo "# written by scripts/record_workflows.sh"
    echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //') ($(nproc) cores)"
    # The log itself may be a tracked file being rewritten; it does not count as a change.
    echo "# commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ":(exclude)$LOG" || echo ' (with uncommitted changes, not in the clone)')"
    echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    git clone --quiet "$SOURCE" "$WORK/clone"
    cd "$WORK/clone"
    git config user.email docs@example.com
    git config user.name docs
    timed bash run.sh setup
    show .venv/bin/python --version
    source .venv/bin/activate
    timed dvc repro
    show git status --short
    show cat metrics.json
    # On a CPU other than the one that made the committed dvc.lock, the outputs differ;
    # commit them, so that the comparisons below start from this machine's own results.
    show "git diff --quiet || git commit -q -am 'dvc.lock: this machine'"
    show python -m stages.predict --model models/model.keras --input data/test.h5 --output test_predictions.csv
    show head -3 test_predictions.csv
    show rm test_predictions.csv test_predictions.png

    # docs/experiments.md: change a param, compare, set it back.
    show "sed -i 's/epochs: 1\$/epochs: 2/' params.yaml"
    show dvc status
    timed dvc repro
    show dvc params diff
    show dvc metrics diff
    show dvc plots diff -o plots_diff
    show rm -rf plots_diff
    show "sed -i 's/epochs: 2\$/epochs: 1/' params.yaml"
    timed dvc repro
    show git status --short

    # An experiment, then a queued sweep.
    timed dvc exp run -S train.learning_rate=0.01
    show "git checkout params.yaml dvc.lock metrics.json plots && dvc checkout"
    show "dvc exp run --queue -S 'model.lstm_units=25,100'"
    timed dvc exp run --run-all
    show "dvc exp show --md --drop '.*' --keep 'Experiment|State|train.learning_rate|model.lstm_units|^accuracy|^loss|roc_auc'"

    # Sharing through a remote.
    show "dvc remote add -d local $WORK/dvc-remote && git commit -q -m 'DVC remote' .dvc/config"
    show dvc push
    show "git clone --quiet $WORK/clone $WORK/clone2 && cd $WORK/clone2"
    show dvc pull
    show dvc status
} >"$LOG" 2>&1
sed -i "s#$WORK#/tmp/WORK#g" "$LOG"
# pip's notes about package locations of this machine's own configuration, not the project's.
sed -i "/^WARNING: Location 'file:/d" "$LOG"
