#!/usr/bin/env bash
# Issue 16's peer table, dense and packed, in one saved run of the benchmark suite (--bench-set peers,
# SAVE=peers-packed): triton-flash, cuDNN, flash-attn 4 and 2, SDPA flash, flex-compiled and torch-varlen
# (IMPLS overrides the list). flash-attn 4's archive (53 MiB) and the working tree (18 MiB) do not fit one 64 MiB
# carry: scripts/gpu_site.sh says how to carry it in two parts (the first call may also build flash-attn 2 into
# /tmp/fa2-out: FA2_OUT=/tmp/fa2-out bash scripts/flash_attn_build_offline.sh build). Without them the run goes on
# without those implementations, and site.txt says so.
# The committed table (reports/peers/nvidia-h200-torch2.11.0.md) was made by this script at cfa002a (triton-flash
# version 10); its header gives the device command and the peer_table.py line.
#   device tool: run(command="ATTNCONF_COMMIT=<sha> bash scripts/gpu_peers.sh", carry=[...], timeout_s=600)
# Back in $OUT: gpu_bench.tar.gz (the storage with the run), summary.txt, logs.tar.gz. Here: tar xzf, then
#   python3 scripts/peer_table.py <storage>/*/NNNN_peers-packed.json --info summary.txt --output reports/peers/...
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
out=${OUT:-/tmp/gpu_peers}
mkdir -p "$out" .carry/fa4 .carry/fa2
if [ ! -f .carry/fa2/flash-attn-site.tar.xz ] && [ -f /tmp/fa2-out/flash-attn-site.tar.xz ]; then
  cp /tmp/fa2-out/flash-attn-site.tar.xz .carry/fa2/
fi
ls -l .carry/fa4 .carry/fa2 >> "$out/site.txt" 2>&1
OUT="$out" SAVE=peers-packed REPORT=0 TOTAL=${TOTAL:-560} \
  BENCH_ARGS="--bench-set peers --impl ${IMPLS:-triton-flash,sdpa-cudnn,flash-attn4,flash-attn2,sdpa-flash,flex-compiled,torch-varlen}" \
  bash scripts/gpu_bench.sh baseline
cat "$out/site.txt" >> "$out/summary.txt"
(cd "$out" && tar czf logs.tar.gz ./*.log site.txt 2>/dev/null; rm -f ./*.log)
echo "gpu_peers: done in $((SECONDS - start)) s" | tee -a "$out/summary.txt"
