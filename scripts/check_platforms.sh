#!/usr/bin/env bash
# Maintainer's check, run after changing a requirements file or the lock: for every
# supported platform and Python, the direct requirements and each lock file resolve, and
# from wheels only. It asks the package index (PyPI), so it is not part of the test suite.
#
#   bash scripts/check_platforms.sh           # needs `uv` on PATH, or UV=/path/to/uv
#
# Prints one line per platform and Python; exits 1 if any fails, with uv's reason.
set -uo pipefail
cd "$(dirname "$0")/.."

UV=${UV:-uv}
command -v "$UV" >/dev/null || { echo "check_platforms: needs uv (pip install uv), or UV=/path/to/uv" >&2; exit 2; }

PLATFORMS="x86_64-manylinux_2_28 aarch64-manylinux_2_28 aarch64-apple-darwin"
PYTHONS="3.11 3.12 3.13"
# Published as source only, and pure Python: pip builds it anywhere without a compiler.
# Every other package must come as a wheel.
SOURCE_ONLY="antlr4-python3-runtime"

exceptions=()
for package in $SOURCE_ONLY; do
    exceptions+=(--no-binary "$package")
done

compile() {  # platform python requirements-file [extra uv options]: the resolved pins
    local platform=$1 python=$2 requirements=$3
    shift 3
    "$UV" pip compile --quiet --no-header --no-annotate --python-platform "$platform" \
        --python-version "$python" --only-binary :all: "${exceptions[@]}" "$@" "$requirements" 2>&1
}

failed=0
check() {  # platform python lock-or-requirements...: one line, ok or FAIL with the reason
    local platform=$1 python=$2 file out pins count=""
    shift 2
    for file in "$@"; do
        if ! out=$(compile "$platform" "$python" "$file"); then
            echo "FAIL $platform Python $python: $file"
            echo "$out" | sed 's/^/    /'
            failed=1
            return
        fi
        case "$file" in
            *.lock)
                # A lock must be complete here: resolving its dependencies adds nothing
                # to the packages it pins for this platform.
                pins=$(compile "$platform" "$python" "$file" --no-deps)
                if [ "$out" != "$pins" ]; then
                    echo "FAIL $platform Python $python: $file lacks packages this platform needs:"
                    diff <(echo "$pins") <(echo "$out") | sed -n 's/^> /    /p'
                    failed=1
                    return
                fi
                [ -z "$count" ] && count=$(echo "$out" | grep -c '==')
                ;;
        esac
    done
    echo "ok   $platform Python $python: $* (${count:-?} packages, wheels only but $SOURCE_ONLY)"
}

for platform in $PLATFORMS; do
    for python in $PYTHONS; do
        check "$platform" "$python" requirements.txt requirements-dev.txt requirements.lock requirements-dev.lock
        # The serving install (predict through onnxruntime, and the HTTP server) on its own.
        check "$platform" "$python" requirements-serve.txt requirements-serve.lock
    done
done
# The CUDA libraries of `bash run.sh setup --gpu` are installed on Linux x86_64 only.
for python in $PYTHONS; do
    check x86_64-manylinux_2_28 "$python" requirements-gpu.lock
done
exit $failed
