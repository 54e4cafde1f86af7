#!/usr/bin/env bash
# A kernel change of triton-flash behind an environment switch, measured and tested in one device call:
#   1. for each word of VARIANTS (NAME=VALUE, several joined by "+", or "default" for none), one saved run of the benchmark suite's peers
#      set for triton-flash and sdpa-cudnn with that variable set (SAVE=switch-<i>), compared afterwards as
#      ratios to cuDNN within each run (scripts/peer_table.py or the storage JSON);
#   2. triton-flash's conformance on CUDA and tests/test_triton_kernel.py, without any variable (the default);
#   3. anything in AFTER (a command line, e.g. a build for a later call), in the time left.
#   device tool: run(command="ATTNCONF_COMMIT=<sha> VARIANTS='ATTNCONF_TRITON_LSE=two default' \
#                bash scripts/gpu_triton_switch.sh", timeout_s=600)
# Back in $OUT: gpu_bench.tar.gz (the storage with every run), conformance/, summary.txt, logs.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
# gpu_bench.sh keeps 60 s of TOTAL for itself: below about 90 a run has too little left to time all 36 cases
if [ "${BENCH_TOTAL:-100}" -lt 90 ]; then
  echo "gpu_triton_switch: BENCH_TOTAL=${BENCH_TOTAL} leaves a run under 30 s after gpu_bench.sh's 60 s reserve; use 90 or more" >&2
  exit 2
fi
out=${OUT:-/tmp/gpu_triton_switch}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# shellcheck disable=SC1091
source scripts/gpu_plugins.sh
summary="$out/summary.txt"
{ date -u +"date %Y-%m-%dT%H:%M:%SZ"; echo "commit ${ATTNCONF_COMMIT:-unknown}"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; } 2>&1 | tee "$summary"
index=0
for variant in ${VARIANTS:-default}; do
  index=$((index + 1)); t0=$SECONDS
  assignment=(); [ "$variant" = default ] || IFS=+ read -ra assignment <<< "$variant"
  env "${assignment[@]}" OUT="$out/bench-$index" SAVE="switch-$index" REPORT=0 TOTAL=${BENCH_TOTAL:-100} \
    BENCH_ARGS="--bench-set peers --impl triton-flash,sdpa-cudnn" bash scripts/gpu_bench.sh baseline \
    > "$out/bench-$index.txt" 2>&1
  echo "bench switch-$index ($variant): exit $? after $((SECONDS - t0)) s; $(grep 'pytest exit' "$out/bench-$index.txt" | tail -1)" \
    | tee -a "$summary"
  [ -f "$out/bench-$index/gpu_bench.tar.gz" ] && mv "$out/bench-$index/gpu_bench.tar.gz" "$out/"
done
t0=$SECONDS
timeout -s INT -k 20 ${CONFORMANCE_TIMEOUT:-120} python3 -m pytest conformance -q -p no:cacheprovider --device cuda -n 8 \
  --impl triton-flash --conformance-report "$out/conformance" > "$out/conformance.log" 2>&1
echo "conformance: exit $? after $((SECONDS - t0)) s; $(grep -E '(passed|failed)' "$out/conformance.log" | tail -1)" \
  | tee -a "$summary"
t0=$SECONDS
timeout -s INT -k 10 ${KERNEL_TESTS_TIMEOUT:-90} python3 -m pytest tests/test_triton_kernel.py -q -p no:cacheprovider -n 8 \
  > "$out/kernel-tests.log" 2>&1
echo "tests/test_triton_kernel.py: exit $? after $((SECONDS - t0)) s; $(grep -E '(passed|failed)' "$out/kernel-tests.log" | tail -1)" \
  | tee -a "$summary"
if [ -n "${AFTER:-}" ]; then
  t0=$SECONDS
  bash -c "$AFTER" > "$out/after.log" 2>&1
  echo "after ($AFTER): exit $? after $((SECONDS - t0)) s" | tee -a "$summary"
fi
(cd "$out" && tar czf logs.tar.gz ./*.log ./*.txt bench-*/ 2>/dev/null; rm -rf ./*.log bench-*)
echo "gpu_triton_switch: done in $((SECONDS - start)) s" | tee -a "$summary"
