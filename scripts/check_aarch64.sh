#!/usr/bin/env bash
# Maintainer's check: the project installed and run on Linux aarch64, emulated on this x86-64
# Linux machine (QEMU's user mode), as a new user there would run it. Needs root, and Debian's
# packages (it installs qemu-user-static, binfmt-support and debootstrap with apt-get if missing).
#
#   sudo bash scripts/check_aarch64.sh                # the default test part (below)
#   sudo bash scripts/check_aarch64.sh --tests quick  # the whole quick suite instead (hours)
#   sudo bash scripts/check_aarch64.sh --tests none   # no tests
#
# What it does, in order:
#   1. an arm64 Debian 12 root at $MOVINGLINE_ARM64_ROOT (default /var/tmp/movingline-arm64),
#      made by debootstrap the first time (about 6 minutes) and reused after; the mirror is the
#      first Debian one in this machine's apt sources, or $DEBIAN_MIRROR;
#   2. a reference on this machine, natively: `dvc repro` at small params (data.size 12, 300
#      training and 100 test sequences) in a temporary copy, with the checkout's .venv
#      (`bash run.sh setup` there first if it has none);
#   3. a copy of the checkout in the root (the files git tracks, plus untracked ones it does not
#      ignore, as they are in the working tree, uncommitted changes included), committed there
#      with the small params and the reference's dvc.lock, metrics.json and training.json as
#      its HEAD; the root keeps the copy's .venv and pip's cache, so a rerun installs again
#      only what a changed lock file asks (the first `run.sh setup` there takes about 15 min);
#   4. in the root, emulated: `bash run.sh repro` (the README's first command: the pipeline,
#      then verify against the x86-64 reference), `bash run.sh verify`, `bash run.sh
#      fingerprint`, and the tests.
# It prints one result line last ("check_aarch64: ok ..." or "check_aarch64: FAILED ...") and
# exits 0 or 1 (2 for a wrong argument or machine). Its mounts (/proc, /sys, /dev in the root)
# live in a mount namespace of their own, which ends with the script; binfmt_misc, if the script
# mounted it, is unmounted on exit. No network traffic but Debian's mirror and the package index.
#
# The default test part: the unit tests of the modules whose results can depend on the
# platform (the CPU description and kernel path, params, the generator and the HDF5 format, the
# model and its byte-stable save, training, metrics, predictions, all-or-nothing outputs, the
# ONNX export through onnxruntime) and run.sh's checks. They load TensorFlow once, in the test
# process, and took under 3 minutes emulated. The quick suite starts a Python process that
# loads TensorFlow (26 s emulated) for each stage it runs, a few hundred times: hours emulated.
# Left out of the part: the test that params.yaml holds the defaults (the copy has small ones).
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOUT=$PWD

ROOT=${MOVINGLINE_ARM64_ROOT:-/var/tmp/movingline-arm64}
SUITE=bookworm
COPY_IN_ROOT=/home/movingline
MARKER=.movingline-arm64-root
PACKAGES="qemu-user-static binfmt-support debootstrap"
BINFMT=/proc/sys/fs/binfmt_misc
TEST_PART="tests/test_environment.py tests/test_runtime.py tests/test_run_sh.py tests/test_params.py
tests/test_sequences.py tests/test_generate.py tests/test_dataset.py tests/test_batching.py tests/test_model.py
tests/test_training.py tests/test_evaluation.py tests/test_prediction.py tests/test_outputs.py tests/test_export.py"
# The copy's params.yaml holds the small params, not the defaults this test expects.
NOT_HERE="--deselect tests/test_params.py::test_the_projects_params_and_tiny_params_are_valid"

die() {
    echo "check_aarch64: error: $*" >&2
    exit 2
}

tests=part
while [ $# -gt 0 ]; do
    case "$1" in
        --tests)
            [ $# -ge 2 ] || die "--tests needs one of: part, quick, none"
            case "$2" in part | quick | none) tests=$2 ;; *) die "--tests $2: expected part, quick or none" ;; esac
            shift 2
            ;;
        *) die "unknown argument $1 (usage: bash scripts/check_aarch64.sh [--tests part|quick|none])" ;;
    esac
done
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || die "runs on Linux x86_64 (this is $(uname -s) $(uname -m))"
[ "$(id -u)" -eq 0 ] || die "needs root (apt-get, debootstrap, chroot, mount)"
command -v apt-get >/dev/null || die "needs Debian's packages (apt-get): qemu-user-static, binfmt-support, debootstrap"
git rev-parse --git-dir >/dev/null 2>&1 || die "$CHECKOUT is not a git checkout"

started=$SECONDS
step_started=$SECONDS
reference=""
mounted_binfmt=0
cleanup() {
    if [ -n "$reference" ]; then rm -rf "$reference"; fi
    if [ "$mounted_binfmt" = 1 ]; then umount "$BINFMT" || true; fi
}
trap cleanup EXIT

elapsed() {  # seconds -> "4 min 2 s"
    echo "$(($1 / 60)) min $(($1 % 60)) s"
}

step() {  # the name of the step that begins, on stderr with the time the last one took
    echo "check_aarch64: $* (at $(elapsed $((SECONDS - started))))" >&2
    step_started=$SECONDS
}

fail() {
    echo "check_aarch64: FAILED: $*; after $(elapsed $((SECONDS - started)))"
    exit 1
}

# The first Debian mirror of this machine's apt sources (one-line or deb822 format).
debian_mirror() {
    local uri
    uri=$(grep -h -E '^[[:space:]]*(deb[[:space:]]|URIs:)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -o -E 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' | head -n 1 | tr -d '[:space:]') || true
    [ -n "$uri" ] || die "no Debian mirror in /etc/apt/sources*; set DEBIAN_MIRROR=<a Debian mirror's URL>"
    echo "$uri"
}

install_packages() {
    local missing="" package
    for package in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=" $package"
    done
    if [ -n "$missing" ]; then
        step "installing$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    fi
}

# The kernel runs aarch64 programs through qemu-aarch64-static once binfmt_misc knows it.
enable_binfmt() {
    if ! mountpoint -q "$BINFMT"; then
        mount -t binfmt_misc binfmt_misc "$BINFMT"
        mounted_binfmt=1
    fi
    if [ ! -e "$BINFMT/qemu-aarch64" ]; then update-binfmts --enable qemu-aarch64 >/dev/null; fi
    grep -q '^enabled' "$BINFMT/qemu-aarch64" 2>/dev/null || die "binfmt_misc has no enabled qemu-aarch64 entry"
}

make_root() {
    if [ -e "$ROOT/$MARKER" ]; then
        return
    fi
    [ ! -e "$ROOT" ] || die "$ROOT exists but was not made by this script; remove it, or set MOVINGLINE_ARM64_ROOT"
    local partial=$ROOT.partial mirror=${DEBIAN_MIRROR:-$(debian_mirror)}
    if [ -e "$partial/$MARKER.building" ]; then rm -rf "$partial"; fi
    [ ! -e "$partial" ] || die "$partial exists but was not made by this script; remove it"
    step "making an arm64 Debian $SUITE root in $ROOT with debootstrap (about 6 minutes)"
    mkdir -p "$partial"
    touch "$partial/$MARKER.building"
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip,git,ca-certificates \
        "$SUITE" "$partial" "$mirror" >"$partial.log" 2>&1 || {
        tail -n 5 "$partial.log" >&2
        fail "debootstrap (log: $partial.log)"
    }
    rm -f "$partial/$MARKER.building" "$partial.log"
    touch "$partial/$MARKER"
    mv "$partial" "$ROOT"
}

# The working tree's files that git tracks or would track, uncommitted changes included, as a tar
# stream (a tracked file deleted in the working tree is left out).
checkout_files() {
    git -C "$CHECKOUT" ls-files -z --cached --others --exclude-standard |
        tar -C "$CHECKOUT" --null --files-from=- --ignore-failed-read --warning=no-failed-read -cf -
}

# Small params: a few minutes of emulated training instead of an hour.
write_small_params() {
    "$1" - "$2/params.yaml" <<'EOF'
import sys, yaml
path = sys.argv[1]
with open(path) as file:
    params = yaml.safe_load(file)
params["data"]["size"] = 12
params["generate_train"]["n_samples"] = 300
params["generate_test"]["n_samples"] = 100
with open(path, "w") as file:
    yaml.safe_dump(params, file, sort_keys=False)
EOF
}

commit_copy() {  # folder message: one commit holding the folder as it is
    git -C "$1" init -q
    git -C "$1" add -A
    git -C "$1" -c user.name=check_aarch64 -c user.email=check_aarch64@localhost commit -q -m "$2"
}

# The x86-64 reference at the small params, computed natively with the checkout's venv.
make_reference() {
    step "the x86-64 reference at small params, natively"
    [ -x "$CHECKOUT/.venv/bin/dvc" ] || bash "$CHECKOUT/run.sh" setup >&2
    reference=$(mktemp -d /var/tmp/movingline-x86-reference.XXXXXX)
    checkout_files | tar -C "$reference" -xf -
    write_small_params "$CHECKOUT/.venv/bin/python" "$reference"
    commit_copy "$reference" "small params"
    ln -s "$CHECKOUT/.venv" "$reference/.venv"
    (cd "$reference" && PATH="$CHECKOUT/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 dvc repro -q) >"$reference/repro.log" 2>&1 || {
        tail -n 20 "$reference/repro.log" >&2
        fail "dvc repro of the x86-64 reference"
    }
}

# The checkout, the small params and the reference's records, as the copy's HEAD in the root.
copy_checkout() {
    step "copying the checkout into $ROOT$COPY_IN_ROOT"
    local copy=$ROOT$COPY_IN_ROOT source
    mkdir -p "$copy"
    find "$copy" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
    checkout_files | tar -C "$copy" -xf -
    cp "$reference/params.yaml" "$reference/dvc.lock" "$reference/metrics.json" "$reference/training.json" "$copy/"
    source=$(git -C "$CHECKOUT" rev-parse --short HEAD)
    [ -z "$(git -C "$CHECKOUT" status --porcelain --untracked-files=no)" ] || source+=" with uncommitted changes"
    commit_copy "$copy" "$source, small params, the x86-64 reference's records"
    # pip inside the root reaches the package index through this machine's resolver and CAs.
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
}

# Runs a command in the root, in the copy, with a clean environment, in a mount namespace that
# holds /proc, /sys and /dev for it and goes away with it.
in_root() {
    local passed=() variable
    for variable in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY MOVINGLINE_THREADS; do
        if [ -n "${!variable:-}" ]; then passed+=("$variable=${!variable}"); fi
    done
    unshare --mount --propagation private -- bash -c '
        set -e
        root=$1
        shift
        mount -t proc proc "$root/proc"
        mount -t sysfs sysfs "$root/sys"
        mount --rbind /dev "$root/dev"
        exec chroot "$root" "$@"' bash "$ROOT" \
        env -i HOME=/root LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin \
        DVC_NO_ANALYTICS=1 "${passed[@]}" bash -c "cd $COPY_IN_ROOT && $1"
}

install_packages
enable_binfmt
make_root
mkdir -p "$ROOT$COPY_IN_ROOT"
[ "$(in_root 'uname -m')" = aarch64 ] || fail "the root does not run as aarch64"
make_reference
copy_checkout
log=$(mktemp /var/tmp/movingline-arm64-run.XXXXXX.log)
echo "check_aarch64: the emulated run's output goes to $log" >&2

step "emulated: bash run.sh setup --dev (about 15 minutes the first time, seconds after)"
in_root 'bash run.sh setup --dev' >>"$log" 2>&1 || fail "run.sh setup --dev (log: $log)"
setup_time=$((SECONDS - step_started))

step "emulated: bash run.sh repro"
in_root 'bash run.sh repro' >>"$log" 2>&1 || fail "run.sh repro (log: $log)"
repro_time=$((SECONDS - step_started))

step "emulated: bash run.sh verify"
status=0
in_root 'bash run.sh verify' >"$log.verify" 2>&1 || status=$?
cat "$log.verify" | tee -a "$log" >&2
verdict=$(sed -n 's/^verdict: //p' "$log.verify")
rm -f "$log.verify"
[ "$status" -le 1 ] && [ -n "$verdict" ] || fail "run.sh verify (log: $log)"

step "emulated: bash run.sh fingerprint"
fingerprint=$(in_root 'bash run.sh fingerprint' 2>>"$log") || fail "run.sh fingerprint (log: $log)"
echo "$fingerprint" | tee -a "$log" >&2
fingerprint=$(echo "$fingerprint" | sed -n 's/^fingerprint: //p')
case "$fingerprint" in
    *"emulated on x86-64"*) ;;
    *) fail "the fingerprint does not say the CPU was emulated: $fingerprint" ;;
esac
in_root 'python3 -c "import json; print(json.load(open(\"training.json\"))[\"environment\"][\"cpu\"])"' |
    grep -q "emulated on x86-64" || fail "training.json does not record an emulated CPU"

tested="no tests"
if [ "$tests" != none ]; then
    selection="-m 'not full' $NOT_HERE"
    if [ "$tests" = part ]; then selection+=" $(echo $TEST_PART)"; fi
    step "emulated: the $tests test set (pytest $selection)"
    status=0
    in_root ".venv/bin/python -m pytest -q -p no:cacheprovider $selection" >"$log.tests" 2>&1 || status=$?
    cat "$log.tests" >>"$log"
    tail -n 1 "$log.tests" >&2
    tested="$tests tests: $(tail -n 1 "$log.tests" | tr -d '=' | sed 's/^ *//; s/ *$//')"
    rm -f "$log.tests"
    [ "$status" -eq 0 ] || fail "the $tests tests ($tested; log: $log)"
fi

qemu=$(qemu-aarch64-static --version | head -n 1 | grep -o -E '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n 1)
echo "check_aarch64: ok: Linux aarch64 under QEMU $qemu user mode; setup $(elapsed "$setup_time"), repro $(elapsed "$repro_time");" \
    "verdict: $verdict; $tested; fingerprint: $fingerprint; $(elapsed $((SECONDS - started))) in all (log: $log)"
