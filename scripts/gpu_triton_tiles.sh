#!/usr/bin/env bash
# One device command for a tile change of triton-flash (16-bit, D = 64): choose, then test and time the choice
# through the suite itself, beside the current tiles, all on one GPU:
#   1. scripts/gpu_triton_tiles.py: candidates per kernel at the peer table's shapes -> $OUT/override.json
#   2. the peers benchmark set for triton-flash and sdpa-cudnn with the current tiles (SAVE=tiles-default), then,
#      if a candidate was kept, with it (SAVE=tiles-chosen): two saved runs of the history, compared as ratios to
#      cuDNN in each
#   3. if a candidate was kept: triton-flash's conformance on CUDA with it (ATTNCONF_TRITON_BLOCKS) and
#      tests/test_triton_kernel.py, in the time left of TOTAL (default 575 s); matrix in $OUT/conformance/
#   device tool: run(command="ATTNCONF_COMMIT=<sha> bash scripts/gpu_triton_tiles.sh", timeout_s=600)
#   (SWEEP_KERNELS="dkdv" SWEEP_BUDGET=150: one kernel's candidates, with more time)
# Back in $OUT: tiles.json, override.json, conformance/, gpu_bench.tar.gz (the storage with both runs), summary.txt,
# logs.tar.gz (every log).
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
TOTAL=${TOTAL:-575}
out=${OUT:-/tmp/gpu_triton_tiles}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# shellcheck disable=SC1091
source scripts/gpu_plugins.sh
summary="$out/summary.txt"
{ date -u +"date %Y-%m-%dT%H:%M:%SZ"; echo "commit ${ATTNCONF_COMMIT:-unknown}"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; } 2>&1 | tee "$summary"

for kernel in ${SWEEP_KERNELS:-forward dkdv dq}; do  # one process each: a compiler abort costs one kernel's candidates
  KERNELS=$kernel OUT="$out" BUDGET=${SWEEP_BUDGET:-60} timeout -k 10 $((${SWEEP_BUDGET:-60} + 30)) \
    python3 scripts/gpu_triton_tiles.py \
    >> "$out/tiles.log" 2>&1
  echo "sweep $kernel: exit $? at $((SECONDS - start)) s; $(grep -E "^$kernel:" "$out/tiles.log" | tail -1)" \
    | tee -a "$summary"
done
python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
merged, rows = {}, []
for kernel in ("forward", "dkdv", "dq"):
    for name, target in ((f"override-{kernel}.json", merged),):
        path = out / name
        if path.exists():
            target.update(json.loads(path.read_text()))
    path = out / f"tiles-{kernel}.json"
    if path.exists():
        rows += json.loads(path.read_text())["rows"]
        path.unlink()
    (out / f"override-{kernel}.json").unlink(missing_ok=True)
(out / "override.json").write_text(json.dumps(merged))
(out / "tiles.json").write_text(json.dumps({"rows": rows, "override": merged}, indent=1))
print("override:", json.dumps(merged))
PY
override=$(cat "$out/override.json" 2>/dev/null || echo '{}')

bench() {  # bench SAVE_NAME [override]: the peers set for triton-flash and sdpa-cudnn, one saved run
  local t0=$SECONDS
  ATTNCONF_TRITON_BLOCKS="${2:-}" OUT="$out/bench-$1" SAVE="$1" REPORT=0 TOTAL=${BENCH_TOTAL:-130} \
    BENCH_ARGS="--bench-set peers --impl triton-flash,sdpa-cudnn" bash scripts/gpu_bench.sh baseline \
    > "$out/bench-$1.txt" 2>&1
  echo "bench $1 ${2:-}: exit $? after $((SECONDS - t0)) s; $(grep 'pytest exit' "$out/bench-$1.txt")" \
    | tee -a "$summary"
}
bench tiles-default
if [ "$override" != '{}' ]; then
  bench tiles-chosen "$override"
  t0=$SECONDS
  ATTNCONF_TRITON_BLOCKS="$override" timeout -s INT -k 20 $((TOTAL - (SECONDS - start) - 60)) python3 -m pytest \
    conformance -q -p no:cacheprovider --device cuda -n 8 --impl triton-flash --conformance-report "$out/conformance" \
    > "$out/conformance.log" 2>&1
  echo "conformance with $override: exit $? after $((SECONDS - t0)) s; $(grep -E '(passed|failed)' \
    "$out/conformance.log" | tail -1)" | tee -a "$summary"
  t0=$SECONDS
  rest=$((TOTAL - (SECONDS - start) - 10))
  [ "$rest" -gt 30 ] || rest=1
  ATTNCONF_TRITON_BLOCKS="$override" timeout -s INT -k 10 "$rest" python3 -m pytest \
    tests/test_triton_kernel.py -q -p no:cacheprovider -n 8 > "$out/kernel-tests.log" 2>&1
  echo "tests/test_triton_kernel.py with $override: exit $? after $((SECONDS - t0)) s; $(grep -E '(passed|failed)' \
    "$out/kernel-tests.log" | tail -1)" | tee -a "$summary"
fi
# the later tarball holds the storage with every run saved here
for run in tiles-chosen tiles-default; do
  if [ -f "$out/bench-$run/gpu_bench.tar.gz" ]; then mv "$out/bench-$run/gpu_bench.tar.gz" "$out/"; break; fi
done
(cd "$out" && tar czf logs.tar.gz ./*.log ./*.txt bench-*/ 2>/dev/null; rm -rf ./*.log bench-*)
echo "gpu_triton_tiles: done in $((SECONDS - start)) s" | tee -a "$summary"
