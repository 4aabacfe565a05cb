#!/usr/bin/env bash
# Sets up the project's environment (once, and again when requirements.lock changes)
# and runs one job in it:
#
#   bash run.sh repro       set up, then `dvc repro` (the whole pipeline at params.yaml)
#   bash run.sh test        set up, then the test suite (pytest)
#   bash run.sh bench [...] set up, then the speed and memory benchmark
#   bash run.sh setup       set up only; then `source .venv/bin/activate` to work by hand
#
# Needs only Python 3.11 with pip and venv, and git.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
VENV=.venv
STAMP=$VENV/.requirements.lock.installed

# DVC would otherwise try to send usage analytics; the repo's .dvc/config also says so.
export DVC_NO_ANALYTICS=1

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "run.sh: creating $VENV with $($PYTHON --version)" >&2
        "$PYTHON" -m venv "$VENV"
    fi
    if ! cmp -s requirements.lock "$STAMP"; then
        echo "run.sh: installing the pinned packages of requirements.lock (a few minutes the first time)" >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.lock
        cp requirements.lock "$STAMP"
    fi
    export PATH="$PWD/$VENV/bin:$PATH"
}

job=${1:-}
[ $# -gt 0 ] && shift
case "$job" in
    setup) setup ;;
    repro) setup; dvc repro "$@" ;;
    test) setup; python -m pytest "$@" ;;
    bench) setup; python -m bench.benchmark "$@" ;;
    *)
        sed -n '2,10p' "$0" >&2
        exit 2
        ;;
esac
