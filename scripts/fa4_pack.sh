#!/usr/bin/env bash
# Pack flash-attn 4 (CuTe DSL) and its pure-Python/CUDA-library dependencies for an offline GPU machine.
#
# The wheels (about 100 MB, the CUDA library wheel alone about 92 MB) do not fit one 64 MiB carry to the lent GPU
# machine, but the unpacked packages recompressed with xz do. Run here (with internet); the result is
# .carry/fa4/fa4-site.tar.xz, which scripts/gpu_site.sh unpacks on the GPU machine.
#
# Targets the GPU machine's Python 3.12 on x86_64 with CUDA 13 (torch cu130). Override with PYVER / CUDA_LIBS.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
CUDA_LIBS=${CUDA_LIBS:-cu13}
FA4_VERSION=${FA4_VERSION:-4.0.0b36}
DSL_VERSION=${DSL_VERSION:-4.8.1}
wheels=.carry/dl/fa4
stage=.carry/stage/fa4-site
mkdir -p "$wheels" .carry/fa4

# Every package flash-attn-4 needs that the GPU image lacks (it has torch, einops, typing-extensions,
# cuda-bindings and protobuf). --no-deps: the cutlass DSL meta-package would pull the cu12 library as well.
pip download --no-deps --pre --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$wheels" \
  "flash-attn-4==$FA4_VERSION" "nvidia-cutlass-dsl==$DSL_VERSION" "nvidia-cutlass-dsl-libs-base==$DSL_VERSION" \
  "nvidia-cutlass-dsl-libs-core==$DSL_VERSION" "nvidia-cutlass-dsl-libs-$CUDA_LIBS==$DSL_VERSION" \
  "apache-tvm-ffi>=0.1.11,<0.2" torch-c-dlpack-ext "quack-kernels>=0.5.3"

# A wheel is a zip of its site-packages content (none of these has a .data folder): unzip them all into one tree.
rm -rf "$stage" && mkdir -p "$stage"
for wheel in "$wheels"/*.whl; do
  unzip -q -o "$wheel" -d "$stage"
done
# Left out, to fit the carry: stubs for other platforms (QNX, aarch64); IKET, the DSL's optional in-kernel event
# tracer (its import is guarded: cute.experimental.iket then reports itself unavailable); tvm-ffi's C++ sources
# and bundled third-party sources (only needed to build extensions against it). tvm-ffi's test library stays:
# importing tvm_ffi loads it.
rm -rf "$stage"/nvidia_cutlass_dsl/cu*/lib/stubs "$stage"/nvidia_cutlass_dsl/dsl_packages/iket \
  "$stage"/tvm_ffi/3rdparty "$stage"/tvm_ffi/src "$stage"/tvm_ffi/cython

# xz with the x86 branch filter (machine code compresses better) and a dictionary larger than the biggest library,
# so repeats across the two large libraries are found: 55.6 MB from 250 MB (plain xz -6: 72 MB). Slow: 9 min here.
tar -C "$stage" -cf - . | xz -T1 --x86 --lzma2=preset=9e,dict=256MiB > .carry/fa4/fa4-site.tar.xz
ls -l .carry/fa4/fa4-site.tar.xz
