#!/usr/bin/env bash
# Speed and memory of pnp-sam on one GPU, in one command (about 7 minutes on an H200 class GPU):
# SD 1.5's architecture with random weights (drawn on the GPU), fp16, 50 steps, at 512 px and
# then 768 px: first edit (1 and 4 prompts), in-process re-edit, cached re-edit in a new editor
# and in a NEW process, and the port's procedure (999 + 999 rows, then 3 rows per step per
# prompt) on the same model, with ratios and torch.cuda.max_memory_allocated per phase; host
# syncs per edit and a profile of one re-edit at 512 px; then 512 px once more with the UNet
# blocks that hold no injection site under torch.compile (first call = compile, then reruns).
# Each line prints as it happens; $OUT (or ./out/gpu_speed) gets speed_512.json,
# speed_768.json, speed_512_compile.json, summary.md (all tables, rewritten after every phase),
# profile_512.txt and log.txt. Each part runs under its own time limit, so a slow part still
# leaves the parts before it and its own finished phases.
#
#   benchmarks/gpu_speed.sh           # on a GPU machine (needs diffusers: see the wheels below)
#   benchmarks/gpu_speed.sh --tiny    # anywhere, on the CPU: tiny random model, 16 and 32 px, 5 steps
#   benchmarks/gpu_speed.sh --backbones   # instead: SD 2.1-v at 768 px and SDXL at 1024 px
#                                         # (real architectures, random weights, fp16, 50 steps;
#                                         # the port's rows counted, not run), speed_sd2_768.json
#                                         # and speed_sdxl_1024.json
#
# The device machine has torch but not diffusers, and reaches no registry. Here, in the
# repository root (.whl/ is git-ignored), fetch the wheels once (24 MiB):
#
#   P="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64"
#   P="$P --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp $P -d .whl diffusers==0.42.1 transformers==5.24.0 \
#     tokenizers==0.23.3 safetensors==0.8.0 accelerate==1.15.0 regex==2026.11.19
#
# (constraints.txt's versions. huggingface_hub stays the machine's 1.33: it satisfies diffusers
# (>=1.32) and transformers (>=1.31), where 2.x would also need httpx2, absent there. regex:
# transformers checks for >=2025.10.22 at import, and the machine's version is unknown.)
# Then call the device tool's `run` with
#
#   command:   bash benchmarks/gpu_speed.sh
#   carry:     [".whl"]
#   timeout_s: 540
#
# The script installs .whl/*.whl into /tmp/site itself where diffusers is missing.
set -uo pipefail
cd "$(dirname "$0")/.."

tiny=0
backbones=0
if [ "${1:-}" = "--tiny" ]; then tiny=1; fi
if [ "${1:-}" = "--backbones" ]; then backbones=1; fi
out="${OUT:-out/gpu_speed}"
mkdir -p "$out"
work="$(mktemp -d)"
log="$out/log.txt"
: >"$log"
export PYTHONUNBUFFERED=1

say() { echo "[gpu_speed $(date -u +%H:%M:%S)] $*" | tee -a "$log"; }

python="${PYTHON:-python3}"
if ! "$python" -c "import importlib.util as u; exit(u.find_spec('diffusers') is None)" && ls .whl/*.whl >/dev/null 2>&1; then
  say "no diffusers here: installing the carried wheels into /tmp/site ..."
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { say "wheel install failed"; exit 1; }
  export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
"$python" -c "import torch, diffusers, transformers; print('torch', torch.__version__, \
'diffusers', diffusers.__version__, 'transformers', transformers.__version__, \
'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$log"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader 2>&1 | tee -a "$log"

if [ "$tiny" = 1 ]; then
  # a CPU check of the script, not a measurement: the port's 999 + 999 rows run once, at the
  # first size only
  common=(--device cpu --dtype fp32 --steps 5 --repeats 1)
  sizes=(16 32)
  limits=(900 600 600)
  second=(--no-port)
else
  common=(--sd15 --device cuda --dtype fp16 --steps 50)
  sizes=(512 768)
  limits=(180 180 90)
  second=()
fi

summary() {  # all tables so far, in one file
  cat "$work"/*.md >"$out/summary.md.tmp" 2>/dev/null && mv "$out/summary.md.tmp" "$out/summary.md"
}

part() {  # part NAME LIMIT ARGS...: one speed.py run under a time limit, its table kept
  local name="$1" limit="$2"
  shift 2
  say "part $name (at most ${limit} s): speed.py ${common[*]} $*"
  timeout --signal=TERM --kill-after=10 "$limit" "$python" benchmarks/speed.py "${common[@]}" \
    --label "$name" --json "$out/speed_$name.json" --markdown "$work/$name.md" "$@" 2>&1 \
    | grep --line-buffered -v -e 'it/s]' -e 's/it]' -e '^\s*$' | tee -a "$log"
  local rc="${PIPESTATUS[0]}"
  summary
  [ "$rc" = 0 ] || say "part $name ended with exit $rc (124: its time limit)"
}

if [ "$backbones" = 1 ]; then  # --arch overrides --sd15; each part well under 540 s in all
  part sd2_768 200 --arch sd2 --size 768 --repeats 1 --port-counted
  part sdxl_1024 300 --arch sdxl --size 1024 --repeats 1 --port-counted
  say "done: $out"
  rm -rf "$work"
  exit 0
fi

s0="${sizes[0]}" s1="${sizes[1]}"
part "$s0" "${limits[0]}" --size "$s0" --repeats 2 --new-process --count-syncs \
  --profile "$out/profile_$s0.txt"
part "$s1" "${limits[1]}" --size "$s1" --repeats 1 --new-process "${second[@]}"
part "${s0}_compile" "${limits[2]}" --size "$s0" --repeats 2 --no-port --compile default
say "done: $out"
rm -rf "$work"
