#!/usr/bin/env bash
# The training recipe on one GPU, in one go: at most 8 minutes (per-step timeouts 90 + 240 +
# 2 x 75 s; the time each step needs is estimated for an L4 — this script has not run yet):
#
#   1. the GPU variants of the packing and merge equivalence tests (bf16 SDPA, bf16 merges);
#   2. bench/train_throughput.py on a randomly initialised gemma-3-1b (exact architecture,
#      1000 rows): codelab (QLoRA fp16) vs ours (bf16 LoRA) vs ours with --method qlora —
#      tokens/s, peak memory, optimizer steps (one run each: a GPU is not shared);
#   3. the whole job (job_image/finetune.py: eval base, train, merge, save, eval, publish) for
#      bf16 LoRA and for QLoRA + merge, end to end on the same model and rows, timed;
#
# then prints one table. Run from a checkout whose .venv has the training stack (make install),
# or set PYTHON. Output and models go to WORK (default .pipeline/gpu-check).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
WORK=${WORK:-.pipeline/gpu-check}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1 PYTHONPATH=$PWD
mkdir -p "$WORK"

"$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU")'

echo "== 1/3 GPU variants of the packing and merge tests"
timeout 90 "$PYTHON" -m pytest -q -p no:cacheprovider tests/train/test_packing.py \
  tests/train/test_merge.py -k cuda | tee "$WORK/tests.txt"

echo "== 2/3 benchmark (codelab vs ours vs ours-qlora)"
timeout 240 "$PYTHON" bench/train_throughput.py --repeats 1 --work-dir "$WORK" \
  --summary "$WORK/bench.json" | tee "$WORK/bench.txt"

echo "== 3/3 the whole job, bf16 LoRA and QLoRA + merge"
cat "$WORK/eval.jsonl" "$WORK/train.jsonl" > "$WORK/rows-1000.jsonl"
for method in lora qlora; do
  rm -rf "$WORK/models/$method" "$WORK/models/$method".*
  started=$SECONDS
  timeout 75 "$PYTHON" job_image/finetune.py --model "$WORK/gemma-3-1b-random" \
    --dataset "$WORK/rows-1000.jsonl" --output-dir "$WORK/models/$method" \
    --lineage-key "gpu-check-$method" --method "$method" > "$WORK/job-$method.log" 2>&1
  echo $((SECONDS - started)) > "$WORK/job-$method.seconds"
  tail -1 "$WORK/job-$method.log"
done

"$PYTHON" - "$WORK" <<'EOF'
import json, sys
from pathlib import Path

work = Path(sys.argv[1])
bench = json.loads((work / "bench.json").read_text())
print("\n| run | method | optimizer steps | tokens/s | peak memory (GiB) | train wall s "
      "| whole job wall s (incl. merge + eval) | eval loss | base eval loss |")
print("|" + "---|" * 9)
for name, row in bench["configs"].items():
    print(f"| bench {name} | {row['method']} | {row['steps']} | {row['tokens_per_s']:.0f} "
          f"| {row['peak_mem_gib']:.2f} | {row['wall_s']:.1f} | - | {row['eval_loss']} | - |")
for method in ("lora", "qlora"):
    manifest = json.loads((work / "models" / method / "MANIFEST.json").read_text())
    training, metrics = manifest["training"], manifest["metrics"]
    seconds = float((work / f"job-{method}.seconds").read_text())
    tokens_per_s = training["train_tokens"] * training["hyperparameters"]["epochs"]
    tokens_per_s /= training["runtime_s"]
    print(f"| job {method} | {training['method']} {training['dtype']} | {training['steps']} "
          f"| {tokens_per_s:.0f} | - | {training['runtime_s']:.1f} | {seconds:.1f} "
          f"| {metrics['eval_loss']:.4f} | {metrics['base_eval_loss']:.4f} |")
print(f"\n{bench['verdict']}")
EOF
