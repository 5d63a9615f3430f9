#!/bin/sh
# Toy-v2: the toy world with a 32x32 latent (x2 VAE; UNet levels 32/16/8/4), prepared for one
# GPU. Why: on the shipped 16x16 toy a subject covers about 3x3 cells of the 8x8 layer PnP
# injects at, so a subject mask resized to that grid is mostly edge (issue 11's finding); here
# the paper's residual site up_blocks[1].resnets[1] (block 3) runs at 8x8, block 4 at 16x16,
# and self-attention reaches 32x32, closer to SD at 512 px (16x16-64x64).
#
#   sh benchmarks/train_toy_v2.sh [OUT=toy_v2] [WORK=toy_v2_work] [DEVICE=cuda]
#
# A from-scratch recipe; not run as written. The shared toy v2 (../shared/toy_v2) was made on
# one H200 by a driver calling the same stages with smaller budgets (VAE 1200, decoder 1000,
# UNet 1982 of 2400 steps in 6 minutes; ../shared/toy_v2_training/) and was below the bar;
# 667 more UNet steps on 2 CPU cores (70 minutes, pnpsam.toyworld.train's docstring) brought
# it over, shipped as src/pnpsam/assets/toy_v2. benchmarks/train_toy_v2_device.sh continues
# it for 8 minutes in one device command.
# Measured on 2 CPU cores (2 threads): VAE 4.0 s/step at batch 64, UNet 6.0 s/step at batch
# 128, so about 3.3 h + 3 h + 33 h here: a GPU job, not a CPU one.
# Bar before it may replace the shipped model: text-to-image colour, shape and background
# accuracy >= 0.85 each (printed by the evaluate step), then rerun the issue-11 measurement.
set -eu
OUT=${1:-toy_v2}
WORK=${2:-toy_v2_work}
DEVICE=${3:-cuda}
PY=${PYTHON:-python}
T="$PY -m pnpsam.toyworld.train --latent-size 32 --device $DEVICE --out $OUT --work-dir $WORK \
   --dataset-size 40000 --threads 4 --log-every 200"
$T --vae-only --vae-steps 3000 --vae-batch 64 --warmup-steps 100
$T --decoder-only --decoder-steps 3000 --vae-batch 64 --warmup-steps 50
$T --unet-steps 20000 --unet-batch 128 --save-every 2000 --warmup-steps 300 --decoder-steps 0
$T --assemble
# Text-to-image accuracy (the bar: colour, shape, background >= 0.85 each).
$PY -m pnpsam.toyworld.evaluate --model "$OUT" --n 200
# The issue-11 comparison on the new model (dev set; held-out only for final candidates).
# Block 3 of toy-v2 is the 8x8 layer, the shipped toy's block 4.
for KEEP in "" "--keep-background"; do
  $PY -m pnpsam.cli.main demo --model "$OUT" --set dev --pairs 16 --steps 20 --device "$DEVICE" \
    --out "out/toy_v2_dev$KEEP" $KEEP \
    --methods "subject,pnp,pnp:residual_blocks=[3],scheme3:background=remove:restore=none,pnp-masked"
done
