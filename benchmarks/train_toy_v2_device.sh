#!/usr/bin/env bash
# Toy v2 on one GPU, one command: continue the shared toy v2's UNet + text encoder (its EMA
# weights are the starting weights of both the model and the new EMA) for TRAIN_MINUTES (8) on
# the same 40000 rendered scenes, with its VAE as it is (re-encoded, not refolded), then score
# the result with the evaluator (100 seeded captions, 25 steps, guidance 4) and print the bar
# check (colour, shape, background >= 0.90 each, all three >= 0.85).
#
# Once, in the checkout that the device tool sends (copies the model, fetches the wheels):
#     sh benchmarks/prepare_toy_v2_device.sh /work/shared/toy_v2
# Then the device tool's run:
#     command:   bash benchmarks/train_toy_v2_device.sh
#     carry:     [".whl", "toy_work/toy_v2"]
#     timeout_s: 600
# If device time is left (the machine stays warm 30 s), the loops' GPU timing and host syncs:
#     command:   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#                PYTHONPATH=src:/tmp/site python3 benchmarks/train_step.py --device cuda
#                --batch 128 --steps 100 --repeats 3 --sync-debug   (one line)
#     carry:     [".whl"]
#     timeout_s: 300
# Expected wall time on the H200 about 9 minutes (wheels 10 s, evaluation of the starting
# model 20 s, render 40000 scenes on 16 processes ~5 s, encode ~5 s, UNet 8 min, evaluation
# 20 s); with less device time left, prefix TRAIN_MINUTES=5. What comes back under $OUT (at most
# 8 files): toy_v2_cont.tar (the pipeline folder; its pnpsam_defaults.json is the v1 toy's, as
# every retrained folder's: replace it with v2's own), train.log, eval_start.json, eval.json,
# grid.png. Re-measure the bar on the CPU here before shipping
# (`python -m pnpsam.toyworld.evaluate --model toy_v2_cont --n 100 --bar`): the GPU's float
# arithmetic differs a little from the CPU's.
#
# Recipe: --unet-lr 5e-4 (round 2 of the v1 toy continued at that peak), warm-up 100 (the
# optimiser state is new), batch 128, cosine over the step count that --unet-minutes sizes at
# the end of warm-up, EMA 0.998, TF32 on, no bf16 (its quality is not measured yet: BF16=1 to
# try it), no torch.compile (COMPILE=1).
#
# Tested on the CPU at a tiny size (20 UNet steps at batch 8 on 64 scenes, 4 captions scored):
#     TINY=1 OUT=$(mktemp -d) PYTHON=.venv/bin/python bash benchmarks/train_toy_v2_device.sh
set -euo pipefail
: "${OUT:?set OUT to the folder the results go to}"
MODEL=${TOY_V2:-toy_work/toy_v2}
PY=${PYTHON:-python3}
[ -f "$MODEL/model_index.json" ] || {
  echo "train_toy_v2_device: no toy v2 pipeline folder at $MODEL" \
    "(run benchmarks/prepare_toy_v2_device.sh and carry toy_work/toy_v2)" >&2
  exit 2
}
WORK=$(mktemp -d)
SECONDS=0
stamp() { echo "[$SECONDS s] $*"; }

if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site" .whl/*.whl
  export PYTHONPATH=$WORK/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1

if [ "${TINY:-0}" = 1 ]; then
  DEVICE=cpu DATASET=64 WORKERS=2 BATCH=8 STEPS=20 WARMUP=5 LOG_EVERY=5 SAVE_EVERY=10 EVAL_N=4
  THREADS=1
else
  DEVICE=cuda DATASET=40000 WORKERS=$(nproc) BATCH=128 STEPS=1000000 WARMUP=100 LOG_EVERY=500
  SAVE_EVERY=2000 EVAL_N=100 THREADS=4
fi
MINUTES=${TRAIN_MINUTES:-8}
FLAGS=()
[ "${BF16:-0}" = 1 ] && FLAGS+=(--bf16)
[ "${COMPILE:-0}" = 1 ] && FLAGS+=(--compile)
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
[ "$DEVICE" = cpu ] || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

evaluate() {  # MODEL_FOLDER JSON_OUT [extra evaluate flags]
  local model=$1 json=$2
  shift 2
  "$PY" -m pnpsam.toyworld.evaluate --model "$model" --n "$EVAL_N" --device "$DEVICE" \
    --threads "$THREADS" "$@" | tee "$WORK/eval.txt"
  head -n 1 "$WORK/eval.txt" >"$json"
}

stamp "evaluating the starting model (also checks the imports and the device)"
evaluate "$MODEL" "$OUT/eval_start.json"

stamp "training"
# The VAE is v2's own (--vae-steps 0: re-encode, no refolding) and there is no decoder stage,
# so the latents are the ones v2's UNet was trained on. --stop-after-minutes is a guard only.
"$PY" -m pnpsam.toyworld.train --latent-size 32 --device "$DEVICE" --threads "$THREADS" \
  --out "$WORK/toy_v2_cont" --work-dir "$WORK/work" --dataset-size "$DATASET" \
  --render-workers "$WORKERS" --vae-resume "$MODEL/vae" --vae-steps 0 --decoder-steps 0 \
  --unet-resume "$MODEL" --unet-steps "$STEPS" --unet-batch "$BATCH" --unet-lr 5e-4 \
  --warmup-steps "$WARMUP" --unet-minutes "$MINUTES" \
  --stop-after-minutes "$(awk "BEGIN {print $MINUTES + 0.5}")" \
  --save-every "$SAVE_EVERY" --log-every "$LOG_EVERY" "${FLAGS[@]}" 2>&1 |
  grep --line-buffered -v "Writing model shards" | tee "$OUT/train.log"
tar -C "$WORK" -cf "$OUT/toy_v2_cont.tar" toy_v2_cont

stamp "evaluating the continued model"
evaluate "$WORK/toy_v2_cont" "$OUT/eval.json" --grid "$OUT/grid.png" --bar
stamp "done: $OUT/toy_v2_cont.tar"
rm -rf "$WORK"
