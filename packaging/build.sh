#!/usr/bin/env bash
# Build the one-folder app into dist/bas-desktop/ and smoke-test it.
# Usage: packaging/build.sh [python]   (default: the python on PATH; needs `pip install .[packaging]`)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python}"
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/bas-desktop.spec
end=$(date +%s)
echo "build time: $((end - start)) s"
echo "size: $(du -sh dist/bas-desktop | cut -f1)"
QT_QPA_PLATFORM=offscreen BAS_CACHE_DIR="${BAS_CACHE_DIR:-$(mktemp -d)}" dist/bas-desktop/bas-desktop --self-test
