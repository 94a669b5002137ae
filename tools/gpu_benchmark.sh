#!/usr/bin/env bash
# GPU benchmark: mmti vs diffusers' examples/textual_inversion on SD 1.5's
# architecture at 512 px, batch 1. Writes JSON/text results to OUT_DIR.
#
#   OUT_DIR=results DIFFUSERS_SCRIPT=path/to/textual_inversion.py bash tools/gpu_benchmark.sh
#
# Uses a random-weight SD 1.5-size model (tools/dev/make_tiny_model.py --family
# sd15-full-random): speed and memory depend on the architecture, not on the
# weights, and no checkpoint can be downloaded on the benchmark machines.
set -uo pipefail
OUT_DIR=${OUT_DIR:-gpu_results}
MODEL=${MODEL:-/tmp/sd15-random}
STEPS=${STEPS:-25}
mkdir -p "$OUT_DIR"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}

run() {  # name, command...: time it, keep its output, go on if it fails
    local name=$1; shift
    local start=$SECONDS
    echo "=== $name: $*"
    "$@" > "$OUT_DIR/$name.txt" 2> "$OUT_DIR/$name.err" || echo "!!! $name failed (see $name.err)"
    echo "=== $name took $((SECONDS - start)) s"
    tail -n 12 "$OUT_DIR/$name.txt"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT_DIR/gpu.txt"
$PY -c "import torch, diffusers, transformers, mmengine; print(torch.__version__, diffusers.__version__, transformers.__version__, mmengine.__version__)" >> "$OUT_DIR/gpu.txt"
cat "$OUT_DIR/gpu.txt"
[ -d "$MODEL" ] || run make_model $PY tools/dev/make_tiny_model.py --family sd15-full-random --out "$MODEL" --model-only

COMMON="model.pretrained_model=$MODEL train_dataloader.dataset.data_root=data/cat_toy"
run mmti_fp16 $PY tools/benchmark.py configs/textual_inversion.py --steps "$STEPS" --warmup 5 --json \
    --cfg-options $COMMON
# Where the host time of a step goes (launch-bound on an H200 when last measured).
run mmti_profile $PY tools/benchmark.py configs/textual_inversion.py --steps 10 --warmup 3 --profile 3 \
    --json --cfg-options $COMMON
# torch.compile fuses the UNet's small ops: fewer launches per step (first steps compile).
run mmti_compiled $PY tools/benchmark.py configs/textual_inversion.py --steps "$STEPS" --warmup 5 --json \
    --cfg-options $COMMON model.compile_unet=True
run mmti_fp16_checkpointing $PY tools/benchmark.py configs/textual_inversion.py --steps "$STEPS" --warmup 5 --json \
    --cfg-options $COMMON model.gradient_checkpointing=True
run mmti_batch_curve $PY tools/benchmark.py configs/textual_inversion.py --steps 15 --warmup 3 --json \
    --batch-sizes 1,2,4,8 --cfg-options $COMMON
if [ -n "${DIFFUSERS_SCRIPT:-}" ]; then
    run vs_diffusers $PY tools/compare_diffusers.py --diffusers-script "$DIFFUSERS_SCRIPT" \
        --config configs/textual_inversion.py --batch-size 1 --steps 10 60 --threads 8 --json \
        --cfg-options $COMMON --diffusers-args --mixed_precision fp16
fi
run compiled_gradients timeout 170 $PY tools/check_compiled_gradients.py --pretrained "$MODEL"
