#!/usr/bin/env bash
# GPU conformance run of FlexAttention (compiled, eager), flash-attn 2, flash-attn 4 and torch's varlen_attn, on an
# offline GPU machine with the packages carried in .carry/ (see scripts/gpu_site.sh). Writes one merged matrix to
# $OUT/conformance/ (reports/gpu-impls/ when OUT is unset), plus the pytest log.
#
# With the device tool:  run(command="bash scripts/gpu_impls.sh", carry=[".carry/fa2", ".carry/fa4"])
#
# flash-attn 2: a carried build (.carry/fa2/flash-attn-site.tar.xz) is used as is; with only the carried source
# (.carry/fa2/flash-attn-src.tar.xz) it is built here first, in the background while the other implementations
# are tested, and the built archive is left in $OUT for the next runs to carry.
# Knobs: GPU_IMPLS_WORKERS (pytest-xdist workers, default 12), GPU_IMPLS_BUDGET (seconds for everything, 560).
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
out=${OUT:-reports/gpu-impls}
budget=${GPU_IMPLS_BUDGET:-560}
workers=${GPU_IMPLS_WORKERS:-12}
mkdir -p "$out/conformance"
log="$out/gpu-impls.log"
export PYTHONUNBUFFERED=1
# many pytest workers each compile (inductor, CuTe DSL): keep each one's own compile pool small
export TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-2}
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
} 2>&1 | tee "$log"

build_pid=
if [ ! -f .carry/fa2/flash-attn-site.tar.xz ] && [ -f .carry/fa2/flash-attn-src.tar.xz ]; then
  echo "building flash-attn 2 from the carried source in the background" | tee -a "$log"
  FA2_OUT="$out" MAX_JOBS=${MAX_JOBS:-12} bash scripts/flash_attn_build_offline.sh build > "$out/fa2-build-summary.txt" 2>&1 &
  build_pid=$!
fi
source scripts/gpu_site.sh >> "$log" 2>&1  # no pipe: its exports must reach this shell
python3 - <<'PY' 2>&1 | tee -a "$log"
from importlib.metadata import version, PackageNotFoundError
for dist in ("flash-attn", "flash-attn-4", "nvidia-cutlass-dsl-libs-base", "quack-kernels", "apache-tvm-ffi"):
    try:
        print(f"{dist} {version(dist)}")
    except PackageNotFoundError:
        print(f"{dist}: not installed")
PY

# the adapter tests, with their CUDA-only cases (compiled flex on one shared q/k/v buffer), beside the rest
python3 -m pytest -q -p no:cacheprovider tests/test_flex_block_masks.py tests/test_flash_adapters.py \
  > /tmp/gpu-impls-unit.log 2>&1 &
unit_pid=$!

conformance() {  # $1: impl globs, $2: report folder, $3: seconds allowed
  timeout -s INT -k 30 "$3" python3 -m pytest conformance -q -p no:cacheprovider --device cuda -n "$workers" \
    --impl "$1" --conformance-report "$2" 2>&1 | tee -a "$log" | tail -n 25
}

parts=()
if [ -n "$build_pid" ]; then
  conformance 'flex-*,flash-attn4,torch-varlen' /tmp/gpu-impls/a $((budget - (SECONDS - start) - 150))
  parts+=(/tmp/gpu-impls/a)
  wait "$build_pid"; echo "flash-attn 2 build exit $?" | tee -a "$log"; cat "$out/fa2-build-summary.txt" | tee -a "$log"
  if [ -f "$out/flash-attn-site.tar.xz" ]; then
    source scripts/gpu_site.sh "$out/flash-attn-site.tar.xz" >> "$log" 2>&1
    conformance 'flash-attn2' /tmp/gpu-impls/b $((budget - (SECONDS - start) - 15))
    parts+=(/tmp/gpu-impls/b)
  fi
else
  conformance 'flex-*,flash-attn2,flash-attn4,torch-varlen' /tmp/gpu-impls/a $((budget - (SECONDS - start) - 15))
  parts+=(/tmp/gpu-impls/a)
fi

wait "$unit_pid"; echo "adapter tests:" | tee -a "$log"; tail -n 15 /tmp/gpu-impls-unit.log | tee -a "$log"

# one matrix from the parts (each part is one pytest run)
python3 - "$out/conformance" "${parts[@]}" <<'PY' 2>&1 | tee -a "$log"
import json, sys
from pathlib import Path
from attnconf import conformance_report
from attnconf.pytest_plugin import report_stem

target, parts = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
records, meta = [], {}
for part in parts:
    for path in sorted(part.glob("*.json")):
        data = json.loads(path.read_text())
        records += data["records"]
        for key, value in data["meta"].items():
            if key == "implementations":
                meta.setdefault(key, {}).update(value)
            elif meta.get(key) is None:
                meta[key] = value
if records:
    json_path, md_path = conformance_report.write(records, meta, target, report_stem(meta))
    print(f"merged {len(records)} records from {len(parts)} run(s) into {md_path}")
else:
    print("no conformance records to merge")
PY
echo "gpu_impls: done in $((SECONDS - start)) s" | tee -a "$log"
