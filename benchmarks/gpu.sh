#!/usr/bin/env bash
# GPU benchmark for a lent accelerator (e.g. one H200): a GPT-2-124M-sized model, bf16, torch.compile,
# FSDP2 on all local GPUs; prints tokens/s and MFU from the run's log. Run from the repository root:
#     bash benchmarks/gpu.sh [STEPS]
# Data: the stdlib corpus with the byte-level BPE tokenizer (no downloads).
set -euo pipefail
STEPS=${1:-300}
NGPU=$(python -c "import torch; print(torch.cuda.device_count())")
OUT=${OUT:-/tmp/zoo-gpu-bench}
rm -rf "$OUT/run"
torchrun --standalone --nproc_per_node="$NGPU" -m zoo.cli train gpt-124m --out "$OUT/run" --steps "$STEPS" \
    --set data.vocab_size=8192 --set train.strategy=fsdp --set train.precision=bf16 --set train.compile=true \
    --set train.batch_size=$((64 * NGPU)) --set train.log_every=20 --set train.eval_every=0 --set train.warmup=50
python - "$OUT/run/log.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"samples_per_s"' in l][2:]  # drop compile warm-up windows
tps = sum(r["tokens_per_s"] for r in rows) / len(rows)
mfu = sum(r["mfu"] for r in rows) / len(rows)
print(f"gpt-124m bf16 compile fsdp: {tps:,.0f} tokens/s, MFU {mfu:.1%}")
PY
