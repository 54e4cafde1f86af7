"""Compile triton-flash's kernels for an H100 (sm_90) on a machine without a GPU, and print their resources.

Triton's wheel carries ptxas and cuobjdump, so the kernels compile for a chosen target anywhere; this reads what the
compiler made of each tile configuration (registers, spilled bytes "STACK", shared memory, whether the matrix
products became Hopper's wgmma) before any GPU time is spent. Usage, from the repository root:

    python scripts/triton_resources.py                       # the configured tiles (GPU_BLOCKS), bf16 and fp32
    python scripts/triton_resources.py dkdv bf16 64 64x64x4x3 128x64x8x3   # candidates: BMxBNxWARPSxSTAGES[xMAXNREG]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # compile for real, not for the interpreter
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from attnconf.impls import _triton_kernels as kernels  # noqa: E402
from attnconf.impls import triton_flash  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
KERNELS = {
    "forward": kernels.attention_forward_kernel,
    "dkdv": kernels.attention_backward_dkdv_kernel,
    "dq": kernels.attention_backward_dq_kernel,
}
POINTER_TYPES = {"KPM": "*u8", "CU_Q": "*i32", "CU_K": "*i32", "LSE": "*fp32", "LSE_SUM": "*fp32", "DELTA": "*fp32"}


def signature(fn, dtype: str, constexprs: dict) -> dict:
    types = {}
    for name in fn.arg_names:
        if name in constexprs:
            types[name] = "constexpr"
        elif name.isupper():  # tensor arguments are upper case
            types[name] = POINTER_TYPES.get(name, f"*{dtype}")
        elif name in ("qk_scale", "softcap_scale", "sm_scale"):
            types[name] = "fp32"
        else:
            types[name] = "i32"
    return types


def divisibility(fn, signature: dict) -> dict:
    """The alignment facts Triton's launcher would give the kernel at run time: tensors and the integer arguments it
    specialises (the strides, all multiples of 16 here; not those in _RUNTIME_INTS) are divisible by 16. Without
    them the compiler assumes 2-byte alignment and cannot pipeline any tile load into shared memory (cp.async needs
    4 to 16 bytes), so its registers and shared memory would not be those of the kernel that runs."""
    aligned = [index for index, name in enumerate(fn.arg_names)
               if signature[name].startswith("*") or (signature[name] == "i32" and name.startswith("stride_")
                                                     and name not in kernels._RUNTIME_INTS)]
    return {(index,): [["tt.divisibility", 16]] for index in aligned}


def resources(kernel: str, dtype: str, head_dim: int, blocks: triton_flash.Blocks, *, causal=True, kpm=False,
              varlen=False, window=False, softcap=False) -> str:
    fn = KERNELS[kernel]
    constexprs = dict(HEAD_DIM=head_dim, BLOCK_M=blocks.block_m, BLOCK_N=blocks.block_n, CAUSAL=causal,
                      HAS_KPM=kpm, IS_VARLEN=varlen, UPCAST=False, PRECISION="ieee" if dtype == "fp32" else "tf32",
                      HAS_WINDOW=window, HAS_SOFTCAP=softcap, MAX_BEFORE_SCALE=triton_flash.MAX_BEFORE_SCALE,
                      MASK_FULL_LOADS=triton_flash.MASK_FULL_LOADS,
                      SINGLE_LSE=triton_flash.SINGLE_LSE_16BIT and dtype != "fp32")
    constexprs = {name: value for name, value in constexprs.items() if name in fn.arg_names}
    types = signature(fn, dtype, constexprs)
    compiled = triton.compile(ASTSource(fn, types, constexprs=constexprs, attrs=divisibility(fn, types)), target=TARGET,
                              options=blocks.launch_options())
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        usage = subprocess.run([str(CUOBJDUMP), "--dump-resource-usage", cubin.name], capture_output=True,
                               text=True).stdout
    regs = next((line.strip().split("CONSTANT")[0] for line in usage.splitlines() if "REG:" in line), usage[-200:])
    wgmma = compiled.asm["ptx"].count("wgmma.mma_async")
    return f"shared {compiled.metadata.shared} B | {regs}| wgmma {wgmma}"


def main(argv: list[str]) -> None:
    if argv:
        kernel, dtype, head_dim, *candidates = argv
        for text in candidates:
            blocks = triton_flash.Blocks(*map(int, text.split("x")))
            print(f"{kernel} {dtype} D={head_dim} {blocks}: {resources(kernel, dtype, int(head_dim), blocks)}")
        return
    for (kernel, is_fp32, head_dim), blocks in triton_flash.GPU_BLOCKS.items():
        dtype = "fp32" if is_fp32 else "bf16"
        for kpm, varlen in ((True, False), (False, True)):
            print(f"{kernel} {dtype} D={head_dim} kpm={kpm} varlen={varlen} {blocks}: "
                  f"{resources(kernel, dtype, head_dim, blocks, kpm=kpm, varlen=varlen)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
