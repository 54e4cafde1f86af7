#!/usr/bin/env bash
# Build flash-attn 2 on a GPU machine without internet, from its source distribution carried in.
#
# The registry ships flash-attn 2 only as a source distribution, and a full build (72 CUDA files, every head dim,
# every architecture) takes far longer than a 10-minute command on a 16-core machine. This script builds a
# restricted extension instead: chosen head dims, chosen GPU architectures, and optionally without the features
# the conformance suite never calls (their entry points then raise "This flash attention build does not support
# ..."; the kernels the suite runs are the same template instances as in a full build).
#
#   bash scripts/flash_attn_build_offline.sh pack     # here, with internet: .carry/fa2/flash-attn-src.tar.xz
#   bash scripts/flash_attn_build_offline.sh build    # on the GPU machine: $FA2_OUT/flash-attn-site.tar.xz
#
# pack: downloads the sdist with pip (metadata is prepared with the local torch, so torch must be installed) and
#   keeps only what the CUDA build reads (setup.py, the Python package, csrc/flash_attn, CUTLASS's headers):
#   about 3 MB compressed instead of 8.5 MB, which leaves room in a 64 MiB carry.
# build: environment knobs, with defaults:
#   FA2_HEAD_DIMS="64"          head dims to compile; a head dim d runs on the smallest built one >= d, larger
#                               ones raise "this flash-attn build has head dims ..."
#   FLASH_ATTN_CUDA_ARCHS="90"  GPU architectures (flash-attn's own variable; 80;90;100;120 upstream)
#   FA2_FEATURES="core"         core: -DFLASHATTENTION_DISABLE_{DROPOUT,ALIBI,SOFTCAP,LOCAL}; full: everything
#   MAX_JOBS=$(nproc)           parallel compile jobs;  FA2_SRC, FA2_OUT: input archive, output folder
# The output archive unpacks into a site folder (see scripts/gpu_site.sh): flash_attn/ (less the sdist's bundled
# copy of flash_attn/cute, which belongs to flash-attn-4), flash_attn_2_cuda*.so, the dist-info, and
# flash_attn_build.txt describing the build (key=value; impls/flash_attn2.py declares the head dims it names).
set -euo pipefail
cd "$(dirname "$0")/.."
FA2_VERSION=${FA2_VERSION:-2.8.3.post2}
FA2_SRC=${FA2_SRC:-.carry/fa2/flash-attn-src.tar.xz}

pack() {
  local dl=.carry/dl/fa2 stage=.carry/stage/fa2-src
  mkdir -p "$dl" .carry/fa2
  FLASH_ATTENTION_SKIP_CUDA_BUILD=TRUE FLASH_ATTENTION_FORCE_BUILD=TRUE \
    pip download --no-deps --no-binary :all: --no-build-isolation -d "$dl" "flash-attn==$FA2_VERSION"
  rm -rf "$stage" && mkdir -p "$stage"
  tar -C "$stage" -xzf "$dl/flash_attn-$FA2_VERSION.tar.gz"
  local top="$stage/flash_attn-$FA2_VERSION"
  # FA3 (hopper/), the ROCm kernels, other extensions, CUTLASS's tests and examples: not read by this build
  rm -rf "$top/hopper" "$top/tests" "$top/csrc/composable_kernel" "$top/csrc/flash_attn_ck" \
    "$top/csrc/layer_norm" "$top/csrc/fused_dense_lib"
  find "$top/csrc/cutlass" -mindepth 1 -maxdepth 1 ! -name include -exec rm -rf {} +
  tar -C "$stage" -cf - "flash_attn-$FA2_VERSION" | xz -T0 -9 > "$FA2_SRC"
  ls -l "$FA2_SRC"
}

restrict_sources() {  # $1: source tree; keeps the CUDA files of the chosen head dims, adds the feature switches
  python3 - "$1" <<'PY'
import os, re, sys
root = sys.argv[1]
dims = sorted(int(d) for d in os.environ["FA2_HEAD_DIMS"].split())
features = os.environ["FA2_FEATURES"]

setup = os.path.join(root, "setup.py")
text = open(setup).read()
kept = lambda m: int(m.group(1)) in dims
lines = [l for l in text.splitlines(keepends=True)
         if not (m := re.search(r'"csrc/flash_attn/src/flash_\w*?hdim(\d+)_', l)) or kept(m)]
text = "".join(lines)
if features == "core":
    # nvcc builds the kernels without these features; the C++ compiler must see the same switches, or the API's
    # checks that refuse a disabled feature (flash_api.cpp) are compiled out and dropout, say, is silently ignored
    names = ("DROPOUT", "ALIBI", "SOFTCAP", "LOCAL")
    flags = "".join(f'    "-DFLASHATTENTION_DISABLE_{f}",\n' for f in names)
    text = text.replace('    "--use_fast_math",\n', '    "--use_fast_math",\n' + flags, 1)
    assert flags in text, "setup.py: nvcc flag list not found"
    cxx = 'compiler_c17_flag=["-O3", "-std=c++17"]'
    assert cxx in text, "setup.py: C++ flag list not found"
    text = text.replace(cxx, cxx[:-1] + "".join(f', "-DFLASHATTENTION_DISABLE_{f}"' for f in names) + "]", 1)
elif features != "full":
    sys.exit(f"FA2_FEATURES must be core or full, got {features!r}")
open(setup, "w").write(text)

switch = os.path.join(root, "csrc/flash_attn/src/static_switch.h")
header = open(switch).read()
start = header.index("#define HEADDIM_SWITCH")
end = header.index("}()", start) + len("}()")
branches = " else ".join(
    f"if (HEADDIM <= {d}) {{ constexpr static int kHeadDim = {d}; return __VA_ARGS__(); }}" for d in dims)
message = f'"this flash-attn build has head dims {", ".join(map(str, dims))} (FA2_HEAD_DIMS); got "'
macro = ("#define HEADDIM_SWITCH(HEADDIM, ...) [&] { " + branches
         + f" else {{ TORCH_CHECK(false, {message}, HEADDIM); }} }}()")
open(switch, "w").write(header[:start] + macro + header[end:])
print(f"sources: {sum('hdim' in l and '.cu' in l for l in lines)} CUDA files for head dims {dims}; features {features}")
PY
}

write_build_record() {  # key=value lines beside the package; impls/flash_attn2.py reads head_dims from it
  {
    echo "flash_attn=$FA2_VERSION"
    echo "head_dims=$FA2_HEAD_DIMS"
    echo "cuda_archs=$FLASH_ATTN_CUDA_ARCHS"
    echo "features=$FA2_FEATURES"
    echo "nvcc=$(nvcc --version | grep -o 'release [0-9.]*' | cut -d' ' -f2)"
    echo "torch=$(python3 -c 'import torch; print(torch.__version__)')"
  } > "$1"
}

build() {
  export FA2_HEAD_DIMS=${FA2_HEAD_DIMS:-64} FA2_FEATURES=${FA2_FEATURES:-core}
  export FLASH_ATTN_CUDA_ARCHS=${FLASH_ATTN_CUDA_ARCHS:-90} MAX_JOBS=${MAX_JOBS:-$(nproc)}
  export FLASH_ATTENTION_FORCE_BUILD=TRUE  # else setup.py tries to download a prebuilt wheel, which fails offline
  export NVCC_THREADS=${NVCC_THREADS:-1}   # one architecture: nvcc's own threads have nothing to split
  local work=${FA2_WORK:-/tmp/fa2-build} out=${FA2_OUT:-${OUT:-.}}
  rm -rf "$work" && mkdir -p "$work/site" "$out"
  tar -C "$work" -xJf "$FA2_SRC"
  local src="$work/flash_attn-$FA2_VERSION"
  restrict_sources "$src"
  local start=$SECONDS
  (cd "$src" && python3 -m pip wheel -v --no-build-isolation --no-deps -w "$work/dist" .) > "$out/fa2-build.log" 2>&1 \
    || { tail -n 40 "$out/fa2-build.log"; exit 1; }
  echo "built in $((SECONDS - start)) s (head dims $FA2_HEAD_DIMS, archs $FLASH_ATTN_CUDA_ARCHS, $FA2_FEATURES, MAX_JOBS $MAX_JOBS)"
  (cd "$work/site" && python3 -m zipfile -e "$work"/dist/flash_attn-*.whl .)
  # the sdist bundles an older copy of flash-attn 4's flash_attn/cute: it would shadow the flash-attn-4 package
  rm -rf "$work/site/flash_attn/cute"
  write_build_record "$work/site/flash_attn_build.txt"
  # small enough to travel beside flash-attn 4 (the carry's 64 MiB): the extension's symbol table is not needed to
  # load it (its dynamic symbols stay), and xz -9e takes a few seconds more than -6
  strip --strip-unneeded "$work"/site/flash_attn_2_cuda*.so 2>/dev/null || true
  tar -C "$work/site" -cf - . | xz -T0 -9e > "$out/flash-attn-site.tar.xz"
  ls -l "$out/flash-attn-site.tar.xz"
}

case "${1:-}" in
  pack) pack ;;
  build) build ;;
  *) echo "usage: $0 pack|build" >&2; exit 2 ;;
esac
