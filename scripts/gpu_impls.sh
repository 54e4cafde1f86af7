#!/usr/bin/env bash
# GPU conformance run of FlexAttention (compiled, eager), flash-attn 2, flash-attn 4 and torch's varlen_attn on an
# offline GPU machine, with the packages carried in .carry/ (see scripts/gpu_site.sh). Writes one merged matrix to
# $OUT/conformance/ (reports/gpu-impls/ when OUT is unset), the log, and GPU memory samples.
#
#   bash scripts/gpu_impls.sh [IMPL_GLOBS]     default: 'flex-*,flash-attn2,flash-attn4,torch-varlen'
#   device tool: run(command="bash scripts/gpu_impls.sh 'flex-*,torch-varlen,flash-attn2'",
#                    carry=[".carry/fa2", ".carry/fa4"])
#
# Compiling is what takes the time (torch.compile for flex-compiled, the CuTe DSL JIT for flash-attn4): on an H100
# with 16 cores each of those two needs most of a 10-minute command, so run them in separate commands.
# flash-attn 2: a carried build (.carry/fa2/flash-attn-site.tar.xz) is used as is; with only the carried source
# (.carry/fa2/flash-attn-src.tar.xz) it is built first, in the background while the other implementations are
# tested, and the built archive is left in $OUT for later runs to carry.
# Knobs: GPU_IMPLS_WORKERS (pytest-xdist workers, default 6: GPU memory in use grew to 50 GiB with 6 workers, and
# 12 ran out of memory), GPU_IMPLS_BUDGET (seconds, default 560), GPU_IMPLS_SELECT (a pytest -k expression),
# GPU_IMPLS_UNIT (0: skip the adapter tests), SITE (where packages unpack; two runs at once need two).
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
globs=${1:-'flex-*,flash-attn2,flash-attn4,torch-varlen'}
out=${OUT:-reports/gpu-impls}
budget=${GPU_IMPLS_BUDGET:-560}
workers=${GPU_IMPLS_WORKERS:-6}
mkdir -p "$out/conformance"
log="$out/gpu-impls.log"
export PYTHONUNBUFFERED=1
# several pytest workers each compile (inductor, CuTe DSL): keep each one's own compile pool small
export TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-2}
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
} 2>&1 | tee "$log"
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 2000 > "$out/gpu-memory-mib.txt" 2>&1 &
sampler_pid=$!

wants_fa2=false
case ",$globs," in *,flash-attn2,*|*,flash-attn\*,*|*,flash-\*,*) wants_fa2=true ;; esac
build_pid=
if $wants_fa2 && [ ! -f .carry/fa2/flash-attn-site.tar.xz ] && [ -f .carry/fa2/flash-attn-src.tar.xz ]; then
  echo "building flash-attn 2 from the carried source in the background" | tee -a "$log"
  FA2_OUT="$out" MAX_JOBS=${MAX_JOBS:-12} bash scripts/flash_attn_build_offline.sh build > "$out/fa2-build-summary.txt" 2>&1 &
  build_pid=$!
fi
source scripts/gpu_site.sh >> "$log" 2>&1  # no pipe: its exports must reach this shell

smoke() {  # $@: modules (flash_attn, flash_attn.cute); a tiny call each, in its own process, with faulthandler:
           # a crash shows where, and spares the run
  [ $# -gt 0 ] || return 0
  timeout 240 python3 -X faulthandler - "$@" <<'PY' 2>&1 | tee -a "$log"
import sys
import torch
from importlib.metadata import version, PackageNotFoundError
for dist in ("flash-attn", "flash-attn-4", "nvidia-cutlass-dsl-libs-base", "quack-kernels", "apache-tvm-ffi"):
    try:
        print(f"{dist} {version(dist)}", flush=True)
    except PackageNotFoundError:
        print(f"{dist}: not installed", flush=True)
q = torch.randn(2, 65, 4, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
kv = torch.randn(2, 80, 2, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
calls = {"flash_attn": lambda m: m.flash_attn_func(q, kv, kv, causal=True),
         "flash_attn.cute": lambda m: m.flash_attn_func(q, kv, kv, causal=True)[0]}
for module in sys.argv[1:]:
    call = calls[module]
    try:
        m = __import__(module, fromlist=["flash_attn_func"])
        out = call(m)
        out.sum().backward()
        print(f"smoke {module}: ok, out {tuple(out.shape)} finite {bool(torch.isfinite(out).all())}", flush=True)
    except Exception as exc:
        print(f"smoke {module}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", flush=True)
PY
}

conformance() {  # $1: impl globs, $2: report folder, $3: seconds allowed
  [ "$3" -gt 30 ] || { echo "no time left for $1" | tee -a "$log"; return; }
  local select=()
  [ -z "${GPU_IMPLS_SELECT:-}" ] || select=(-k "$GPU_IMPLS_SELECT")
  timeout -s INT -k 30 "$3" python3 -X faulthandler -m pytest conformance -q -p no:cacheprovider --device cuda \
    -n "$workers" --durations=15 --impl "$1" --conformance-report "$2" "${select[@]}" 2>&1 | tee -a "$log" | tail -n 25
}

# the adapter tests, with their CUDA-only cases (compiled flex on one shared q/k/v buffer), beside the rest
unit_pid=
if [ "${GPU_IMPLS_UNIT:-1}" != 0 ]; then
  python3 -m pytest -q -p no:cacheprovider tests/test_flex_block_masks.py tests/test_flash_adapters.py \
    > "${SITE:-/tmp/site}-unit.log" 2>&1 &
  unit_pid=$!
fi

parts=()
if [ -n "$build_pid" ]; then
  rest=$(echo "$globs" | tr ',' '\n' | grep -vx 'flash-attn2' | paste -sd, -)
  if [ -n "$rest" ]; then
    conformance "$rest" "${SITE:-/tmp/site}-parts/a" $((budget - (SECONDS - start) - 150))
    parts+=("${SITE:-/tmp/site}-parts/a")
  fi
  wait "$build_pid"; echo "flash-attn 2 build exit $?" | tee -a "$log"; tee -a "$log" < "$out/fa2-build-summary.txt"
  if [ -f "$out/flash-attn-site.tar.xz" ]; then
    source scripts/gpu_site.sh "$out/flash-attn-site.tar.xz" >> "$log" 2>&1
    smoke flash_attn
    conformance 'flash-attn2' "${SITE:-/tmp/site}-parts/b" $((budget - (SECONDS - start) - 15))
    parts+=("${SITE:-/tmp/site}-parts/b")
  fi
else
  modules=()
  $wants_fa2 && modules+=(flash_attn)
  case ",$globs," in *flash-attn4*|*flash-attn\**|*flash-\**) modules+=(flash_attn.cute) ;; esac
  smoke "${modules[@]}"
  conformance "$globs" "${SITE:-/tmp/site}-parts/a" $((budget - (SECONDS - start) - 15))
  parts+=("${SITE:-/tmp/site}-parts/a")
fi

if [ -n "$unit_pid" ]; then
  wait "$unit_pid"; echo "adapter tests:" | tee -a "$log"; tail -n 4 "${SITE:-/tmp/site}-unit.log" | tee -a "$log"
fi
kill "$sampler_pid" 2>/dev/null
echo "GPU memory used, max over the run: $(sort -n "$out/gpu-memory-mib.txt" | tail -n 1) MiB" | tee -a "$log"

# one matrix from the parts (each part is one pytest run)
python3 -m attnconf.conformance_report merge "$out/conformance" "${parts[@]}" 2>&1 | tee -a "$log"
echo "gpu_impls: done in $((SECONDS - start)) s" | tee -a "$log"
