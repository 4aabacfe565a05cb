#!/usr/bin/env bash
# Regenerates the lock files from the requirements files, after changing one of those:
# each lock pins every package for every supported platform and Python (3.11 to 3.13),
# with environment markers where a platform needs another package, and one version of each
# package across them all. Then run scripts/check_platforms.sh and the pipeline.
#
#   bash scripts/update_locks.sh            # needs `uv` on PATH, or UV=/path/to/uv
set -euo pipefail
cd "$(dirname "$0")/.."

UV=${UV:-uv}
command -v "$UV" >/dev/null || { echo "update_locks: needs uv (pip install uv), or UV=/path/to/uv" >&2; exit 2; }

lock() {  # requirements-file lock-file [extra uv options]
    local requirements=$1 lock=$2
    shift 2
    "$UV" pip compile --quiet --universal --python-version 3.11 --fork-strategy fewest \
        --custom-compile-command "bash scripts/update_locks.sh" "$@" "$requirements" -o "$lock"
}

lock requirements.txt requirements.lock
# The development, serving and GPU locks add packages to the runtime lock's, and keep its versions
# of the packages they share.
lock requirements-dev.txt requirements-dev.lock -c requirements.lock
# The serving install (predict through onnxruntime, no TensorFlow): a subset of the runtime
# lock, at its versions.
lock requirements-serve.txt requirements-serve.lock -c requirements.lock
# `bash run.sh setup --gpu` replaces tensorflow-cpu with the same release of tensorflow and
# NVIDIA's CUDA libraries (its `and-cuda` extra), published for Linux x86_64 only.
version=$(sed -n 's/^tensorflow-cpu==\([^ ]*\) .*/\1/p' requirements.lock)
[ -n "$version" ] || { echo "update_locks: no tensorflow-cpu in requirements.lock" >&2; exit 1; }
echo "tensorflow[and-cuda]==$version ; sys_platform == 'linux' and platform_machine == 'x86_64'" |
    lock - requirements-gpu.lock -c requirements.lock
