#!/usr/bin/env bash
# triton-flash with sliding windows on one GPU (notes/triton-kernel.md, "Sliding window"): its whole conformance run on
# CUDA (WINDOW-1/2 included), tests/test_triton_kernel.py, then the peers benchmark set for triton-flash and cuDNN
# (SAVE=window): the non-window cases, to compare with the committed peer run as ratios to cuDNN.
#   device tool: run(command="ATTNCONF_COMMIT=<sha> bash scripts/gpu_triton_window.sh", timeout_s=600)
# Back in $OUT: conformance/ (the matrix), gpu_bench.tar.gz, summary.txt, logs.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
out=${OUT:-/tmp/gpu_triton_window}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# shellcheck disable=SC1091
source scripts/gpu_plugins.sh
summary="$out/summary.txt"
{ date -u +"date %Y-%m-%dT%H:%M:%SZ"; echo "commit ${ATTNCONF_COMMIT:-unknown}"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn',
torch.backends.cudnn.version(), 'triton', triton.__version__)"; } 2>&1 | tee "$summary"
t0=$SECONDS
timeout -s INT -k 20 "${CONF_SECONDS:-240}" python3 -m pytest conformance -q -p no:cacheprovider --device cuda -n 6 \
  --impl triton-flash --conformance-report "$out/conformance" > "$out/conformance.log" 2>&1
echo "conformance (triton-flash): exit $? after $((SECONDS - t0)) s; $(grep -E '(passed|failed)' \
  "$out/conformance.log" | tail -1)" | tee -a "$summary"
grep -E "^FAILED|^ERROR" "$out/conformance.log" | head -20 | tee -a "$summary"
t0=$SECONDS
timeout -s INT -k 10 120 python3 -m pytest tests/test_triton_kernel.py -q -p no:cacheprovider -n 6 \
  > "$out/kernel-tests.log" 2>&1
echo "tests/test_triton_kernel.py: exit $? after $((SECONDS - t0)) s; $(grep -E '(passed|failed)' \
  "$out/kernel-tests.log" | tail -1)" | tee -a "$summary"
grep -E "^FAILED|^ERROR" "$out/kernel-tests.log" | head -20 | tee -a "$summary"
t0=$SECONDS
OUT="$out/bench" SAVE=window REPORT=0 TOTAL=${BENCH_TOTAL:-150} \
  BENCH_ARGS="--bench-set peers --impl triton-flash,sdpa-cudnn" bash scripts/gpu_bench.sh baseline \
  > "$out/bench.txt" 2>&1
echo "bench (triton-flash, sdpa-cudnn): exit $? after $((SECONDS - t0)) s; $(grep 'pytest exit' "$out/bench.txt")" \
  | tee -a "$summary"
mv "$out/bench/gpu_bench.tar.gz" "$out/" 2>/dev/null
(cd "$out" && tar czf logs.tar.gz ./*.log ./*.txt bench/ 2>/dev/null; rm -rf ./*.log bench)
echo "gpu_triton_window: done in $((SECONDS - start)) s" | tee -a "$summary"
