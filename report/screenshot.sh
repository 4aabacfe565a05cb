#!/usr/bin/env bash
# Retakes docs/report.png, the README's picture of the report's three charts (training
# curves, ROC curve, confusion matrix). Run it after `bash run.sh repro` at the default
# params; it needs Chromium (Debian: apt-get install chromium) and no network.
set -euo pipefail
cd "$(dirname "$0")/.."
export DVC_NO_ANALYTICS=1 PATH="$PWD/.venv/bin:$PATH"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Only the charts: targets match the plot ids of dvc.yaml's top-level `plots:` (their
# titles); the pictures are in the README already.
dvc plots show --out "$work/page" "^Training" "^ROC" "^Confusion" >/dev/null
chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --no-first-run --user-data-dir="$work/profile" \
    --host-resolver-rules="MAP * ~NOTFOUND" --proxy-server=127.0.0.1:9 \
    --hide-scrollbars --window-size=1560,545 --virtual-time-budget=15000 \
    --screenshot="$PWD/docs/report.png" "file://$work/page/index.html" 2>/dev/null
echo "wrote docs/report.png ($(stat -c %s docs/report.png) bytes)"
