#!/usr/bin/env bash
# Device call 1 of notes/triton-kernel.md version 5 (TMA loads), on one GPU:
#   1. flash-attn 2 built in the background from the carried source (.carry/fa2/flash-attn-src.tar.xz), for call 2
#      (scripts/gpu_peers.sh): $OUT/flash-attn-site.tar.xz and a copy in /tmp, kept while the machine stays warm;
#      a carried part of flash-attn 4's archive (.carry/fa4p/a) is copied to /tmp too (the whole archive and the
#      working tree do not fit one 64 MiB carry; call 2 brings the rest)
#   2. meanwhile triton-flash's conformance on CUDA with TMA loads, and tests/test_triton_kernel.py (both load paths)
#   3. once the build is done (a quiet CPU): the peers benchmark set for triton-flash (TMA), triton-flash-pointer
#      (version 4's loads) and sdpa-cudnn, in one saved run (SAVE=loads): compared within that run
#   device tool: run(command="ATTNCONF_COMMIT=<sha> bash scripts/gpu_triton_tma.sh", carry=[...], timeout_s=600)
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
out=${OUT:-/tmp/gpu_triton_tma}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# shellcheck disable=SC1091
source scripts/gpu_plugins.sh
summary="$out/summary.txt"
{ date -u +"date %Y-%m-%dT%H:%M:%SZ"; echo "commit ${ATTNCONF_COMMIT:-unknown}"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn',
torch.backends.cudnn.version(), 'triton', triton.__version__)"; } 2>&1 | tee "$summary"
for part in .carry/fa4p/*; do [ -f "$part" ] && cp "$part" "/tmp/fa4-part-$(basename "$part")"; done
ls -l /tmp/fa4-part-* 2>/dev/null | tee -a "$summary"

build=
if [ -f .carry/fa2/flash-attn-src.tar.xz ]; then
  FA2_OUT=/tmp/fa2-out FA2_HEAD_DIMS=64 FLASH_ATTN_CUDA_ARCHS=90 MAX_JOBS=${FA2_JOBS:-12} \
    bash scripts/flash_attn_build_offline.sh build > "$out/fa2-build.log" 2>&1 &
  build=$!
fi

t0=$SECONDS
ATTNCONF_TRITON_LOADS=tma timeout -s INT -k 20 ${CONF_SECONDS:-200} nice -n 5 python3 -m pytest conformance -q \
  -p no:cacheprovider --device cuda -n 4 --impl triton-flash --conformance-report "$out/conformance" \
  > "$out/conformance.log" 2>&1
echo "conformance (triton-flash, TMA): exit $? after $((SECONDS - t0)) s; $(grep -E '(passed|failed)' \
  "$out/conformance.log" | tail -1)" | tee -a "$summary"
for loads in tma pointer; do
  t0=$SECONDS
  ATTNCONF_TRITON_LOADS=$loads timeout -s INT -k 10 120 nice -n 5 python3 -m pytest tests/test_triton_kernel.py -q \
    -p no:cacheprovider -n 4 > "$out/kernel-tests-$loads.log" 2>&1
  echo "tests/test_triton_kernel.py ($loads): exit $? after $((SECONDS - t0)) s; $(grep -E '(passed|failed)' \
    "$out/kernel-tests-$loads.log" | tail -1)" | tee -a "$summary"
done

if [ -n "$build" ]; then
  wait "$build"
  echo "flash-attn 2 build: exit $? at $((SECONDS - start)) s; $(grep -E '^built' "$out/fa2-build.log")" \
    | tee -a "$summary"
  cp /tmp/fa2-out/flash-attn-site.tar.xz "$out/" 2>/dev/null
fi

t0=$SECONDS
OUT="$out/bench" SAVE=loads REPORT=0 TOTAL=${BENCH_TOTAL:-240} \
  BENCH_ARGS="--bench-set peers --impl-module scripts.triton_variants:VARIANTS --impl triton-flash,triton-flash-pointer,sdpa-cudnn" \
  bash scripts/gpu_bench.sh baseline > "$out/bench.txt" 2>&1
echo "bench (triton-flash TMA, triton-flash-pointer, sdpa-cudnn): exit $? after $((SECONDS - t0)) s; \
$(grep 'pytest exit' "$out/bench.txt")" | tee -a "$summary"
mv "$out/bench/gpu_bench.tar.gz" "$out/" 2>/dev/null
(cd "$out" && tar czf logs.tar.gz ./*.log ./*.txt bench/ 2>/dev/null; rm -rf ./*.log bench)
echo "gpu_triton_tma: done in $((SECONDS - start)) s" | tee -a "$summary"
