#!/usr/bin/env bash
# Sets up the project's environment (once, and again when a lock file changes)
# and runs one job in it:
#
#   bash run.sh repro       set up, then `dvc repro` (the whole pipeline at params.yaml),
#                           then the verdict of `verify`
#   bash run.sh verify      set up, then say whether the workspace reproduces what HEAD records
#   bash run.sh test        set up with the development tools, then the quick test suite (pytest)
#       --all               the full suite: also kill and resume, workers, Slurm, the browser
#   bash run.sh bench [...] set up, then the speed and memory benchmark
#   bash run.sh fingerprint set up, then print which bits this machine computes (docs/reproducibility.md)
#   bash run.sh serve [...] set up, then serve models/model.onnx over HTTP on 127.0.0.1:8000 (docs/serving.md)
#   bash run.sh setup       set up only; then `source .venv/bin/activate` to work by hand
#       --dev               also the development tools (requirements-dev.lock)
#       --gpu               also NVIDIA's CUDA libraries (Linux x86_64; docs/install.md)
#
# Needs Python 3.11, 3.12 or 3.13 with pip and venv, and git, on Linux (x86_64, aarch64)
# or macOS (arm64). It picks the newest of python3.13, python3.12, python3.11 that runs;
# PYTHON=/path/to/python chooses another.
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
# Each lock file, once installed, is copied into the venv; a lock that differs from its
# copy is installed again.
RUNTIME_STAMP=$VENV/.requirements.lock.installed
DEV_STAMP=$VENV/.requirements-dev.lock.installed
GPU_STAMP=$VENV/.requirements-gpu.lock.installed

# DVC would otherwise try to send usage analytics; the repo's .dvc/config also says so.
export DVC_NO_ANALYTICS=1

die() {
    echo "run.sh: $*" >&2
    exit 2
}

# Whether "$1" runs and is a supported Python (a pyenv shim for a missing version fails here).
supported_python() {
    "$1" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' >/dev/null 2>&1
}

pick_python() {
    if [ -n "${PYTHON:-}" ]; then
        supported_python "$PYTHON" ||
            die "PYTHON=$PYTHON is not Python 3.11, 3.12 or 3.13 ($("$PYTHON" --version 2>&1 | head -n 1))"
        return
    fi
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null && supported_python "$candidate"; then
            PYTHON=$candidate
            return
        fi
    done
    local found="no python3 on PATH"
    command -v python3 >/dev/null && found=$(python3 --version 2>&1 | head -n 1)
    die "needs Python 3.11, 3.12 or 3.13 (with pip and venv); found $found"
}

setup() {
    local dev=0 gpu=0 arg
    for arg in "$@"; do
        case "$arg" in
            --dev) dev=1 ;;
            --gpu) gpu=1 ;;
            *) die "setup: unknown option $arg (options: --dev, --gpu)" ;;
        esac
    done
    # A venv made by an unsupported Python, or from another lock, is rebuilt rather than
    # patched: pip never removes a package that the new lock no longer lists.
    if [ -x "$VENV/bin/python" ] && ! supported_python "$VENV/bin/python"; then
        echo "run.sh: $VENV does not run a supported Python; rebuilding it" >&2
        rm -rf "$VENV"
    fi
    if [ -e "$RUNTIME_STAMP" ] && ! cmp -s requirements.lock "$RUNTIME_STAMP"; then
        echo "run.sh: requirements.lock changed; rebuilding $VENV" >&2
        if [ -e "$GPU_STAMP" ]; then gpu=1; fi
        if [ -e "$DEV_STAMP" ]; then dev=1; fi
        rm -rf "$VENV"
    fi
    if [ "$gpu" = 1 ]; then gpu_supported; fi
    if [ ! -x "$VENV/bin/python" ]; then
        pick_python
        echo "run.sh: creating $VENV with $("$PYTHON" --version)" >&2
        "$PYTHON" -m venv "$VENV" || die "could not create $VENV with $PYTHON (on Debian/Ubuntu: apt install python3-venv)"
    fi
    install_lock requirements.lock "$RUNTIME_STAMP"
    if [ "$dev" = 1 ]; then install_lock requirements-dev.lock "$DEV_STAMP"; fi
    if [ "$gpu" = 1 ] && ! cmp -s requirements-gpu.lock "$GPU_STAMP"; then
        # The full tensorflow build replaces the CPU-only one: both install the same files.
        "$VENV/bin/python" -m pip uninstall --quiet --yes tensorflow-cpu
        install_lock requirements-gpu.lock "$GPU_STAMP"
    fi
    export PATH="$PWD/$VENV/bin:$PATH"
}

install_lock() {
    local lock=$1 stamp=$2
    if ! cmp -s "$lock" "$stamp"; then
        echo "run.sh: installing the pinned packages of $lock (a few minutes the first time)" >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock"
        cp "$lock" "$stamp"
    fi
}

# TensorFlow's `and-cuda` extra installs NVIDIA's CUDA libraries from wheels; the project
# offers it on Linux x86_64 only. Elsewhere --gpu stops before installing anything.
gpu_supported() {
    local system machine
    system=$(uname -s)
    machine=$(uname -m)
    case "$system-$machine" in
        Linux-x86_64) ;;
        Darwin-*) die "--gpu: no CUDA on macOS; TensorFlow runs on the CPU there (plain setup)" ;;
        *) die "--gpu: CUDA libraries are installed on Linux x86_64 only, not on $system $machine" ;;
    esac
}

job=${1:-}
[ $# -gt 0 ] && shift
case "$job" in
    setup) setup "$@" ;;
    repro)
        setup
        dvc repro "$@"
        echo
        # Status 1 is the verdict "not reproduced" (after a change of params, say): the
        # pipeline itself ran, so that is no failure of this command.
        python -m reproduction.verify || [ $? -eq 1 ]
        ;;
    verify) setup; python -m reproduction.verify "$@" ;;
    test)
        setup --dev
        if [ "${1:-}" = --all ]; then
            shift
            python -m pytest "$@"
        else
            python -m pytest -m "not full" "$@"
        fi
        ;;
    bench) setup; python -m bench.benchmark "$@" ;;
    fingerprint) setup; python -m reproduction.fingerprint "$@" ;;
    # exec: the server is this process, so that SIGTERM sent to it reaches the server itself.
    serve) setup; exec python -m movingline.inference.server "$@" ;;
    *)
        sed -n '2,19p' "$0" >&2
        exit 2
        ;;
esac
