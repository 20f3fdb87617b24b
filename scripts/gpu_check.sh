#!/usr/bin/env bash
# The GPU check: one device call of at most 8 minutes that leaves its summaries in $OUT.
#   1. the smoke of every entry point (nas.train and the five searches) on the GPU;
#   2. training throughput against torchvision and timm, per precision and memory layout
#      (scripts/bench_throughput.py);
#   3. the ImageNet loader on 20,000 synthetic JPEGs: alone, nas.train end to end, and the
#      plain step (scripts/bench_loader.py); the loader alone again with float32 batches;
#   4. the predicted wall time of every experiments/*_imagenet overlay (estimate=true; the
#      data is not there, so the published ImageNet sizes are used).
# The smokes run side by side, and so do the estimates (the GPU has the room).
# On the lent machine (../shared/device/README.md): carry `.whl`, then
#   bash scripts/gpu_check.sh
# Files written (at most 8 come back): gpu.csv, smoke.tsv, throughput.json, loader.json,
# loader_workers.json, estimates.json, gpu_check.log. Each step has its own timeout, so one that hangs does not take the rest.
set -u
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
WORK=$(mktemp -d)
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target .site .whl/*.whl
    export PYTHONPATH=$PWD/.site:$PWD
fi
PY=${PYTHON:-python3}
LOG="$OUT/gpu_check.log"
COMMON="logger=csv trainer.enable_progress_bar=false"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,memory.total,driver_version \
    --format=csv > "$OUT/gpu.csv" 2>&1 || echo "no nvidia-smi" > "$OUT/gpu.csv"

run() {   # run NAME TIMEOUT ARGS...: one command, its status and seconds into smoke.tsv
    local name=$1 limit=$2
    shift 2
    local start=$(date +%s.%N)
    timeout "$limit" "$PY" "$@" >> "$LOG" 2>&1
    local rc=$?
    printf "%s\t%s\t%.1f\n" "$name" "$rc" "$(echo "$(date +%s.%N) - $start" | bc)" \
        >> "$OUT/smoke.tsv"
}

printf "command\texit\tseconds\n" > "$OUT/smoke.tsv"
run train 120 -m nas.train budget=smoke $COMMON hydra.run.dir="$WORK/train" &
for method in moga atomnas darts autonl rexnet; do
    run "search_$method" 120 -m nas.search method=$method budget=smoke $COMMON \
        hydra.run.dir="$WORK/$method" &
done
wait

timeout 180 "$PY" scripts/bench_throughput.py --out "$OUT/throughput.json" >> "$LOG" 2>&1 \
    || echo "bench_throughput: exit $?" >> "$LOG"

timeout 150 "$PY" scripts/bench_loader.py --root "$WORK/jpegs" --images 20000 \
    --out "$OUT/loader.json" >> "$LOG" 2>&1 || echo "bench_loader: exit $?" >> "$LOG"
# the loader alone again with float32 batches from the workers (the default on CUDA: uint8)
timeout 60 "$PY" scripts/bench_loader.py --root "$WORK/jpegs" --images 20000 --no-train \
    --normalize-on workers --out "$OUT/loader_workers.json" >> "$LOG" 2>&1 \
    || echo "bench_loader workers: exit $?" >> "$LOG"

for overlay in experiments/*_imagenet.yaml; do
    name=$(basename "$overlay" .yaml)
    run "estimate_$name" 120 -m nas.search +experiment="$name" data.root="$WORK/no_imagenet" \
        estimate=true $COMMON hydra.run.dir="$WORK/estimate_$name" &
done
wait
"$PY" - "$WORK" "$OUT/estimates.json" <<'EOF'
import json, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
found = {p.parent.name.removeprefix("estimate_"): json.loads(p.read_text())
         for p in sorted(work.glob("estimate_*/estimate.json"))}
out.write_text(json.dumps(found, indent=1) + "\n")
EOF
cat "$OUT/smoke.tsv"
