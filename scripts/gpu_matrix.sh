#!/usr/bin/env bash
# Every implementation's GPU conformance in one device command (about 8 minutes on an H200 machine with 16 cores),
# for an offline machine with flash-attn 2's source and flash-attn 4 carried (.carry/fa2, .carry/fa4):
#   - flash-attn 2 is built from the carried source in the background (scripts/flash_attn_build_offline.sh build),
#   - meanwhile two pytest runs side by side: every other implementation, flash-attn 4 included (part a), and
#     flex-compiled, whose torch.compile work is most of its time (part b),
#   - flash-attn 2 once built (part c),
#   - one matrix merged from the three parts (they test disjoint implementations) in $OUT/conformance/.
# Back in $OUT: conformance/<device>-torch<version>.{md,json}, matrix-runs.tar.gz (the parts' matrices, logs, versions,
# GPU memory samples), flash-attn-site.tar.xz (the built flash-attn 2, for later calls to carry), env.txt.
#
#   device tool: run(command="ATTNCONF_COMMIT=$(git rev-parse --short HEAD) bash scripts/gpu_matrix.sh",
#                    carry=[".carry/fa2", ".carry/fa4"], timeout_s=600)
# Where the working tree and flash-attn 4's archive do not fit one carry, carry it in two parts (scripts/gpu_site.sh):
# run(command="cp .carry/fa4p/a /tmp/fa4-part-a", carry=[".carry/fa4p/a"]) and at once after it the run above with
# carry=[".carry/fa2", ".carry/fa4p/b"]. A carried flash-attn 2 build (.carry/fa2/flash-attn-site.tar.xz) is used
# as it is, without building.
#
# Knobs: TOTAL (seconds for the whole script, default 570), WORKERS_A / WORKERS_B / WORKERS_C (pytest-xdist
# workers, default 6 / 5 / 4: on an H100, 6 workers of the other implementations used 50 GiB of GPU memory and
# flex-compiled's 6 used 45 GiB), FA2_JOBS (parallel nvcc jobs, default 13: the head-dim-64 build has 13 compile
# units), IMPLS_A (part a's implementations), PYTEST_ARGS (added to every part, e.g. "-k causal"), DEVICE
# (default cuda; cpu for a dry run of the script).
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
total=${TOTAL:-570}
out=${OUT:-build/gpu-matrix}
work=/tmp/gpu-matrix
rm -rf "$work" && mkdir -p "$work/parts" "$out/conformance"
export PYTHONUNBUFFERED=1
export TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-2}  # per worker: several compile at once
# shellcheck disable=SC1091
source scripts/gpu_plugins.sh
left() { echo $((total - (SECONDS - start) - ${1:-0})); }

{
  date -u +"date %Y-%m-%dT%H:%M:%SZ"
  echo "commit ${ATTNCONF_COMMIT:-unknown}"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn',
torch.backends.cudnn.version(), 'triton', triton.__version__)"
  echo "cpus $(nproc)"
} 2>&1 | tee "$work/env.txt"
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 2000 > "$work/gpu-memory-mib.txt" 2>&1 &
sampler=$!

build=
if [ -f .carry/fa2/flash-attn-site.tar.xz ]; then
  cp .carry/fa2/flash-attn-site.tar.xz "$work/"
elif [ -f .carry/fa2/flash-attn-src.tar.xz ]; then
  FA2_OUT="$work" MAX_JOBS=${FA2_JOBS:-13} bash scripts/flash_attn_build_offline.sh build \
    > "$work/fa2-build-summary.txt" 2>&1 &
  build=$!
fi

# flash-attn 4 (and the CuTe DSL) for parts a and b; part c gets flash-attn 2 alone in a folder of its own
SITE=/tmp/site-fa4 source scripts/gpu_site.sh > "$work/site.txt" 2>&1
python3 - <<'PY' 2>&1 | tee -a "$work/env.txt"
from importlib.metadata import version, PackageNotFoundError
for dist in ("flash-attn-4", "nvidia-cutlass-dsl-libs-base", "quack-kernels", "apache-tvm-ffi", "pytest",
             "pytest-xdist", "hypothesis", "pytest-benchmark"):
    try:
        print(dist, version(dist))
    except PackageNotFoundError:
        print(dist, "not installed")
PY

part() {  # part NAME IMPL_GLOBS WORKERS SECONDS: one pytest run, niced so that the flash-attn 2 build keeps its pace
  local name=$1 globs=$2 workers=$3 seconds=$4 t0=$SECONDS
  if [ "$seconds" -le 30 ]; then echo "part $name ($globs): no time left" | tee -a "$work/summary.txt"; return; fi
  # shellcheck disable=SC2086  # PYTEST_ARGS is a word list on purpose
  timeout -s INT -k 30 "$seconds" nice -n 5 python3 -X faulthandler -m pytest conformance -q -p no:cacheprovider \
    --device "${DEVICE:-cuda}" -n "$workers" --durations=15 --impl "$globs" --conformance-report "$work/parts/$name" \
    ${PYTEST_ARGS:-} > "$work/part-$name.log" 2>&1
  echo "part $name ($globs, $workers workers): exit $? after $((SECONDS - t0)) s: $(grep -E '(passed|failed)' \
    "$work/part-$name.log" | tail -1)" | tee -a "$work/summary.txt"
}

part a "${IMPLS_A:-eager,sdpa-*,triton-flash,tiled-pytorch,torch-varlen,flex-eager,flash-attn4}" "${WORKERS_A:-6}" \
  "$(left 45)" &
part_a=$!
part b flex-compiled "${WORKERS_B:-5}" "$(left 45)" &
part_b=$!

if [ -n "$build" ]; then
  wait "$build"
  echo "flash-attn 2 build: exit $? at $((SECONDS - start)) s; $(tr '\n' ' ' < "$work/fa2-build-summary.txt" \
    | tail -c 400)" | tee -a "$work/summary.txt"
fi
parts=()
if [ -f "$work/flash-attn-site.tar.xz" ]; then
  mkdir -p /tmp/site-fa2 && tar -C /tmp/site-fa2 -xJf "$work/flash-attn-site.tar.xz"
  ( export PYTHONPATH=/tmp/site-fa2; part c flash-attn2 "${WORKERS_C:-4}" "$(left 15)" )
  parts+=("$work/parts/c")
else
  echo "flash-attn 2: no build, not tested" | tee -a "$work/summary.txt"
fi
wait "$part_a" "$part_b"
parts+=("$work/parts/a" "$work/parts/b")  # c first: its flash-attn version is the matrix's
kill "$sampler" 2>/dev/null
echo "GPU memory used, max over the run: $(sort -n "$work/gpu-memory-mib.txt" | tail -n 1) MiB" \
  | tee -a "$work/summary.txt"

python3 -m attnconf.conformance_report merge "$out/conformance" "${parts[@]}" 2>&1 | tee -a "$work/summary.txt"
cp "$work/env.txt" "$out/"
[ -f "$work/flash-attn-site.tar.xz" ] && [ ! -f .carry/fa2/flash-attn-site.tar.xz ] && cp "$work/flash-attn-site.tar.xz" "$out/"
echo "gpu_matrix: done in $((SECONDS - start)) s" | tee -a "$work/summary.txt"
tar -C "$work" -czf "$out/matrix-runs.tar.gz" parts env.txt summary.txt site.txt gpu-memory-mib.txt \
  $(cd "$work" && ls ./*.log fa2-build-summary.txt fa2-build.log 2>/dev/null)
cat "$work/summary.txt"
