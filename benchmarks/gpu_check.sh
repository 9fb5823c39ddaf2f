#!/usr/bin/env bash
# GPU check: training throughput of the default model with bf16 autocast vs fp32 on one CUDA device.
#
# Prepares a small synthetic `source` platform (the real data steps + the frozen-layer cache) in a
# temporary folder, then runs benchmarks/train_throughput.py on cuda in fp32 and in bf16 (naive, dedup and
# dedup + cache paths, same batches) and the real (cache) path at a 4x batch, and prints sequences/s, the
# bf16 speed-up over fp32 and the peak GPU memory (torch.cuda.max_memory_allocated) of each.
# Expects the package installed (pip install -e .); takes ~2-4 minutes on one H100 including the data.
#
#   benchmarks/gpu_check.sh                  # on a CUDA machine
#   benchmarks/gpu_check.sh --device cpu     # dry run of the same steps on CPU (tiny platform, 1 step)
#   PYTHON=/path/to/python KEEP=1 STEPS=30 benchmarks/gpu_check.sh
#
# Environment: PYTHON (default: the repo's .venv, else python3), STEPS / WARMUP (timed / untimed steps
# per path), BATCH (default: params.yaml train.batch_size), USERS / ITEMS (platform size), KEEP=1 keeps
# the work folder (its path is printed).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
DEVICE=cuda
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE="${2:-}"; shift 2 ;;
    --device=*) DEVICE="${1#--device=}"; shift ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1' (use --device cuda|cpu)" >&2; exit 2 ;;
  esac
done
[[ $DEVICE == cuda || $DEVICE == cpu ]] || { echo "gpu_check: --device must be cuda or cpu" >&2; exit 2; }

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
PYTHON="$(command -v "$PYTHON")"
export PATH="$(dirname "$PYTHON"):$PATH"   # the `transrec` entry point lives next to the interpreter
export TQDM_DISABLE=1 WANDB_MODE=disabled
"$PYTHON" -c "import transrec" 2>/dev/null \
  || { echo "gpu_check: the transrec package is not importable from $PYTHON (run: pip install -e $ROOT)" >&2; exit 1; }

if [[ $DEVICE == cuda ]]; then
  if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: torch.cuda is not available ($("$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda build", torch.version.cuda)' 2>&1 | tail -1)); nothing measured. CPU dry run: $0 --device cpu"
    exit 1
  fi
  USERS="${USERS:-1500}"; ITEMS="${ITEMS:-1200}"; STEPS="${STEPS:-20}"; WARMUP="${WARMUP:-3}"
else
  USERS="${USERS:-120}"; ITEMS="${ITEMS:-100}"; STEPS="${STEPS:-1}"; WARMUP="${WARMUP:-1}"; BATCH="${BATCH:-8}"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
if [[ "${KEEP:-0}" == 1 ]]; then echo "gpu_check: work folder $WORK (kept)"; else trap 'rm -rf "$WORK"' EXIT; fi
START=$SECONDS

# ---- a small synthetic platform: the default params, `source` resized, everything below $WORK ----------
"$PYTHON" - "$ROOT/params.yaml" "$WORK" "$DEVICE" "$USERS" "$ITEMS" <<'PY'
import sys
from pathlib import Path

import yaml

base, work, device, users, items = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
p = yaml.safe_load(Path(base).read_text())
p["paths"] = {"data": str(work / "data"), "results": str(work / "results")}
p["platforms"]["source"]["synthetic"].update(n_users=users, n_items=items)
p["train"]["device"] = device
p["wandb"]["mode"] = "disabled"
p["model"]["loss"] = "softmax"  # the sampled objective of trainable encoder tops (profiles/gpu_reference.yaml)
for enc in ("text_encoder", "image_encoder"):
    p["model"][enc]["trainable_blocks"] = max(1, p["model"][enc]["trainable_blocks"])
(work / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
PY
BATCH="${BATCH:-$("$PYTHON" -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['train']['batch_size'])" "$WORK/params.yaml")}"

echo "gpu_check: preparing synthetic platform 'source' ($USERS users, $ITEMS items) on $DEVICE in $WORK"
cd "$WORK"
for step in download clean resize tokenize split cache; do
  if ! transrec "$step" source --params "$WORK/params.yaml" >"$WORK/$step.log" 2>&1; then
    echo "gpu_check: transrec $step source failed; last lines of its log:" >&2
    tail -n 20 "$WORK/$step.log" >&2
    exit 1
  fi
  echo "  $step: $(grep -v '^\s*$' "$WORK/$step.log" | tail -n 1 | cut -c1-150)"
done
PREP=$((SECONDS - START))
echo "gpu_check: data ready in ${PREP} s"

# ---- the measurements -------------------------------------------------------------------------------------
bench() {  # name, extra args...
  local name="$1"; shift
  echo
  echo "== $name"
  "$PYTHON" "$HERE/train_throughput.py" --params "$WORK/params.yaml" --platform source --device "$DEVICE" \
    --steps "$STEPS" --warmup "$WARMUP" --json "$WORK/$name.json" "$@"
}
bench fp32 --batch-size "$BATCH"
bench bf16 --batch-size "$BATCH" --bf16
bench fp32_4x --batch-size $((4 * BATCH)) --paths cache
bench bf16_4x --batch-size $((4 * BATCH)) --paths cache --bf16

echo
"$PYTHON" - "$WORK" "$BATCH" <<'PY'
import json
import sys
from pathlib import Path

work, batch = Path(sys.argv[1]), int(sys.argv[2])
runs = {name: json.loads((work / f"{name}.json").read_text()) for name in ("fp32", "bf16", "fp32_4x", "bf16_4x")}
print(f"gpu_check summary: {runs['fp32']['device_name']}")
mem = "peak CUDA MiB" if runs["fp32"]["device"].startswith("cuda") else "peak RSS MiB"
head = (f"{'path':<12} {'batch':>6} {'fp32 seq/s':>11} {'bf16 seq/s':>11} {'bf16 speed-up':>14} "
        f"{'fp32 ' + mem:>19} {'bf16 ' + mem:>19} {'vs naive (bf16)':>16}")
print(head)
print("-" * len(head))
naive = runs["bf16"]["paths"].get("naive")
for suffix, size in (("", batch), ("_4x", 4 * batch)):
    fp32, bf16 = runs["fp32" + suffix]["paths"], runs["bf16" + suffix]["paths"]
    for path in ("naive", "dedup", "cache"):
        if path not in fp32:
            continue
        a, b = fp32[path], bf16[path]
        vs = f"{naive['seconds_per_step'] / b['seconds_per_step'] * size / batch:.1f}x" if naive else "-"
        print(f"{path:<12} {size:>6} {a['sequences_per_s']:>11.1f} {b['sequences_per_s']:>11.1f} "
              f"{a['seconds_per_step'] / b['seconds_per_step']:>13.2f}x {a['peak_mib']:>19.0f} {b['peak_mib']:>19.0f} "
              f"{vs:>16}")
print("(vs naive: sequences/s over the naive path's at the default batch, both bf16; cache = the package's "
      "real training path)")
PY
echo "gpu_check: done in $((SECONDS - START)) s (data ${PREP} s)"
