#!/usr/bin/env bash
# Maintainer's check for a machine with an NVIDIA GPU (Linux x86_64, NVIDIA's driver installed):
# the GPU install and the whole pipeline at the default params on the GPU, compared with the
# committed CPU run. A few minutes on one GPU once the packages are installed.
#
#   bash scripts/check_gpu.sh
#
# It works in a copy of the checkout at $MOVINGLINE_GPU_WORK (default /var/tmp/movingline-gpu):
# the files git tracks plus untracked ones it does not ignore, as they are in the working tree,
# committed there as its HEAD, so that `verify` compares with this checkout's dvc.lock,
# metrics.json and training.json and nothing in the checkout changes. The copy's .venv stays
# between runs. In order:
#   1. `bash run.sh setup --gpu` (the first time it downloads NVIDIA's CUDA and cuDNN wheels
#      from PyPI);
#   2. the GPUs: nvidia-smi's list, TensorFlow's, TF32 and memory growth as movingline.runtime
#      set them, and whether Keras's LSTM takes cuDNN's kernel;
#   3. `bash run.sh fingerprint`;
#   4. `dvc repro` at the default params, then `bash run.sh verify`;
#   5. one summary line: "check_gpu: ok ..." or "check_gpu: FAILED ...".
# Exit status: 0 when verify says bit-identical or reproduced within tolerance; 1 when a step
# fails or verify says not reproduced; 2, before anything is installed, for an argument, or a
# machine without an NVIDIA GPU or other than Linux x86_64.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOUT=$PWD
WORK=${MOVINGLINE_GPU_WORK:-/var/tmp/movingline-gpu}
MARKER=.movingline-gpu-copy

die() {
    echo "check_gpu: error: $*" >&2
    exit 2
}

[ $# -eq 0 ] || die "takes no arguments (got $*); MOVINGLINE_GPU_WORK=DIR sets where it works"
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] ||
    die "runs on Linux x86_64, where run.sh installs CUDA (this is $(uname -s) $(uname -m))"
command -v nvidia-smi >/dev/null || die "no nvidia-smi on PATH: no NVIDIA driver here, so no GPU to check"
gpus=$(nvidia-smi -L 2>&1) || die "nvidia-smi -L failed: $(echo "$gpus" | head -n 1)"
echo "$gpus" | grep -q '^GPU [0-9]' || die "nvidia-smi lists no GPU: $(echo "$gpus" | head -n 1)"
git -C "$CHECKOUT" rev-parse --git-dir >/dev/null 2>&1 || die "$CHECKOUT is not a git checkout"
[ ! -e "$WORK" ] || [ -e "$WORK/$MARKER" ] || die "$WORK exists but was not made by this script; remove it, or set MOVINGLINE_GPU_WORK"

started=$SECONDS
fail() {
    echo "check_gpu: FAILED: $*; after $((SECONDS - started)) s"
    exit 1
}

echo "check_gpu: copying the checkout into $WORK" >&2
mkdir -p "$WORK"
touch "$WORK/$MARKER"
find "$WORK" -mindepth 1 -maxdepth 1 ! -name .venv ! -name "$MARKER" -exec rm -rf {} +
git -C "$CHECKOUT" ls-files -z --cached --others --exclude-standard |
    tar -C "$CHECKOUT" --null --files-from=- --ignore-failed-read --warning=no-failed-read -cf - | tar -C "$WORK" -xf -
source=$(git -C "$CHECKOUT" rev-parse --short HEAD)
[ -z "$(git -C "$CHECKOUT" status --porcelain --untracked-files=no)" ] || source+=" with uncommitted changes"
git -C "$WORK" init -q
echo "/$MARKER" >>"$WORK/.git/info/exclude"
git -C "$WORK" add -A
git -C "$WORK" -c user.name=check_gpu -c user.email=check_gpu@localhost commit -q -m "$source"
cd "$WORK"
export DVC_NO_ANALYTICS=1

echo "check_gpu: bash run.sh setup --gpu" >&2
bash run.sh setup --gpu || fail "run.sh setup --gpu"
export PATH="$WORK/.venv/bin:$PATH"

echo "check_gpu: the GPUs" >&2
echo "$gpus"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
devices=$(python - <<'EOF'
import os

from movingline import runtime
from movingline.settings import read_settings

runtime.prepare(read_settings(os.environ))  # loads TensorFlow and configures the GPUs
tf = runtime.tf
gpus = tf.config.list_physical_devices("GPU")
print(f"TensorFlow {tf.__version__}, built with CUDA {tf.test.is_built_with_cuda()}: {runtime.describe_gpus(tf) or 'no GPU'}")
for gpu in gpus:
    print(f"  {gpu.name}: memory growth {tf.config.experimental.get_memory_growth(gpu)}")
try:  # Keras's own test (a private module): the layer's arguments allow cuDNN and a GPU is there
    from keras.src.backend.tensorflow.rnn import cudnn_ok

    from movingline.model import build_model
    from movingline.params import ModelParams

    lstm = build_model(16, ModelParams(filters=2, kernel_size=2, pool_size=2, lstm_units=8, conv_layers=1)).get_layer("lstm")
    cell = lstm.cell
    print(f"  LSTM on cuDNN: {cudnn_ok(cell.activation, cell.recurrent_activation, lstm.unroll, cell.use_bias)}")
except ImportError as error:
    print(f"  LSTM on cuDNN: unknown ({error})")
EOF
) || fail "TensorFlow on the GPU"
echo "$devices"
echo "$devices" | grep -q "GPU: " || fail "TensorFlow sees no GPU although nvidia-smi does"

echo "check_gpu: bash run.sh fingerprint" >&2
fingerprint=$(bash run.sh fingerprint) || fail "run.sh fingerprint"
echo "$fingerprint"

echo "check_gpu: dvc repro at the default params" >&2
repro_started=$SECONDS
dvc repro || fail "dvc repro"
repro_time=$((SECONDS - repro_started))

echo "check_gpu: bash run.sh verify" >&2
status=0
report=$(bash run.sh verify) || status=$?
echo "$report"
verdict=$(echo "$report" | sed -n 's/^verdict: //p')
[ -n "$verdict" ] || fail "run.sh verify gave no verdict (exit status $status)"
summary="$(echo "$devices" | head -n 1); dvc repro $repro_time s; verdict: $verdict; ${fingerprint#fingerprint: }; $((SECONDS - started)) s in all"
[ "$status" -eq 0 ] || fail "$summary"
echo "check_gpu: ok: $summary"
