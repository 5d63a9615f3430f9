#!/bin/sh
# Prepare the checkout for benchmarks/train_toy_v2_device.sh (run here, in the repo root, once
# per checkout; the device machine reaches no registry and gets only the repository):
#  - copies the toy v2 folder (default ../shared/toy_v2) into toy_work/toy_v2 (git-ignored;
#    a sibling ../shared does not travel to the device machine, paths named in carry do);
#  - downloads the wheels the device image lacks into .whl/ (git-ignored through the repo's
#    info/exclude): diffusers, the version this project is tested with (the image has torch,
#    transformers, huggingface-hub, tokenizers, safetensors), and importlib_metadata.
#
#   sh benchmarks/prepare_toy_v2_device.sh [TOY_V2_FOLDER]
set -eu
SRC=${1:-../shared/toy_v2}
PY=${PYTHON:-.venv/bin/python}
[ -f "$SRC/model_index.json" ] || { echo "prepare: no pipeline folder at $SRC" >&2; exit 2; }
mkdir -p toy_work
rm -rf toy_work/toy_v2.part
cp -r "$SRC" toy_work/toy_v2.part
chmod -R u+w toy_work/toy_v2.part
rm -rf toy_work/toy_v2
mv toy_work/toy_v2.part toy_work/toy_v2
EXCLUDE=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$EXCLUDE")"
grep -qx '/.whl/' "$EXCLUDE" 2>/dev/null || echo '/.whl/' >>"$EXCLUDE"
DIFFUSERS=$("$PY" -c 'import diffusers; print(diffusers.__version__)')
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "diffusers==$DIFFUSERS" importlib_metadata
ls -l .whl toy_work/toy_v2
du -sh .whl toy_work/toy_v2
