#!/usr/bin/env bash
# GPU benchmark for a lent accelerator (e.g. one H200): a GPT-2-124M-sized model, bf16, torch.compile,
# FSDP2 on all local GPUs; prints tokens/s and MFU from the run's log. Run from the repository root:
#     bash benchmarks/gpu.sh [--dry-run] [STEPS]
# Data: the stdlib corpus with the byte-level BPE tokenizer (no downloads). The whole script stays under 8 minutes
# (the training command is cut at 7). --dry-run (any machine, no GPU): prints the GPU command, then runs the same
# pipeline at toy size on the CPU (gpt-nano, one process, fp32, no compile, 8 steps on 50,000 characters) and
# parses its log the same way, so the script is checked before a GPU is spent on it.
set -euo pipefail
DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=1
    shift
fi
STEPS=${1:-300}
PYTHON=${PYTHON:-python}
OUT=${OUT:-/tmp/zoo-gpu-bench}
rm -rf "$OUT/run"

NGPU=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
if (( NGPU == 0 && ! DRY_RUN )); then
    echo "no CUDA device: use --dry-run on a CPU machine" >&2
    exit 2
fi
SHOWN_GPUS=$(( NGPU > 0 ? NGPU : 1 ))  # what the dry run prints for a 1-GPU machine
GPU_COMMAND=(torchrun --standalone --nproc_per_node="$SHOWN_GPUS" -m zoo.cli train gpt-124m --out "$OUT/run"
             --steps "$STEPS" --set data.vocab_size=8192 --set train.strategy=fsdp --set train.precision=bf16
             --set train.compile=true --set train.batch_size=$((64 * SHOWN_GPUS)) --set train.log_every=20
             --set train.eval_every=0 --set train.warmup=50)
COMMAND=("${GPU_COMMAND[@]}")
if (( DRY_RUN )); then
    echo "dry run; on a GPU machine this would run: ${GPU_COMMAND[*]}"
    export ZOO_HOME="$OUT/home"  # the toy run's data cache stays out of the user's
    COMMAND=("$PYTHON" -m zoo.cli train gpt-nano --out "$OUT/run" --steps 8 --set data.max_chars=50000
             --set data.tokenizer=char --set data.code_samples=0 --set model.backbone.max_seq_len=64
             --set train.batch_size=4 --set train.log_every=2 --set train.eval_every=0 --set train.warmup=2
             --set train.tensorboard=false)
fi
timeout 420 "${COMMAND[@]}"
"$PYTHON" - "$OUT/run/log.jsonl" "$DRY_RUN" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"samples_per_s"' in l][2:]  # drop compile warm-up windows
tps = sum(r["tokens_per_s"] for r in rows) / len(rows)
mfu = sum(r["mfu"] for r in rows) / len(rows)
label = "dry run, gpt-nano fp32 on the CPU" if sys.argv[2] == "1" else "gpt-124m bf16 compile fsdp"
print(f"{label}: {tps:,.0f} tokens/s, MFU {mfu:.1%}")
PY
