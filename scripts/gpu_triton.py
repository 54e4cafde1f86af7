"""One GPU call for triton-flash: conformance, peak memory, ceilings, tile sweep and timings, results under $OUT.

Usage on the device machine (repository root):  python3 scripts/gpu_triton.py
Phases, each bounded by what is left of a wall-clock budget (BUDGET seconds, default 520), results written as they
come so a cut-off run still returns what it finished:

1. smoke: a few bf16/fp32 calls against the float64 reference (fails fast, before anything long);
2. conformance: pytest over the contracts for triton-flash and tiled-pytorch on CUDA, plus tests/test_triton_kernel.py
   (pytest-xdist spreads the Triton compilations over the cores when it is installed); matrix in $OUT/conformance/;
   then triton-flash with another seed, with 300 hypothesis examples per property, and a probe declaring float32
   on CUDA (no matrix); then the error ratios of float32 (not declared on CUDA) where it came close to the bound;
3. memory: peak memory above inputs and outputs (MEM-1's measurement) for S = 1k..16k, triton-flash and eager;
4. ceilings: a bf16 8192^3 matrix product and a device-to-device copy;
5. sweep: tile configurations of the bf16 kernels at S = 4096 (which config each kernel should use);
6. timings: forward and forward+backward TFLOP/s, bf16, D = 64, H = 16, S = 1k..16k, causal and not, for
   triton-flash, sdpa-flash and sdpa-cudnn (triton.testing.do_bench, median).

Files in $OUT: gpu_triton.log, results.json (everything), memory.md, timings.md, conformance.log,
conformance_extra.log, conformance/*.
DRY=1 runs every phase on the CPU with tiny sizes (no timings worth reading): a check of this script itself;
CONF_ARGS adds pytest arguments to the conformance run (e.g. CONF_ARGS='-k causal' for a short dry run).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DRY = os.environ.get("DRY") == "1"
if DRY:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

from attnconf import registry  # noqa: E402
from attnconf.benchmarking import BACKWARD_FLOP_FACTOR, forward_flops, machine_info  # noqa: E402
from attnconf.capabilities import TOP_LEFT  # noqa: E402
from attnconf.reference import reference_attention  # noqa: E402
from attnconf.conformance.test_memory import memory_above_io  # noqa: E402  (MEM-1's own measurement)

OUT = Path(os.environ.get("OUT") or "/tmp/gpu_triton")
OUT.mkdir(parents=True, exist_ok=True)
DEVICE = torch.device("cpu" if DRY else "cuda")
STARTED = time.monotonic()
BUDGET = float(os.environ.get("BUDGET", "520"))
RESULTS: dict = {}
LOG = open(OUT / "gpu_triton.log", "a")


def log(*parts) -> None:
    line = " ".join(str(p) for p in parts)
    print(line, flush=True)
    LOG.write(line + "\n")
    LOG.flush()


def left() -> float:
    return BUDGET - (time.monotonic() - STARTED)


def save() -> None:
    (OUT / "results.json").write_text(json.dumps(RESULTS, indent=1, default=str))


registry.load_builtin()
IMPLS = registry.registered()
TRITON = IMPLS["triton-flash"]
from attnconf.impls import triton_flash  # noqa: E402  (after load_builtin: the module registered itself)


# ---- 0. environment and smoke ----------------------------------------------------------------------------------


def environment() -> None:
    info = machine_info(DEVICE)
    info["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if not DRY:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,clocks.sm,power.limit",
                              "--format=csv,noheader"], capture_output=True, text=True)
        info["nvidia_smi"] = smi.stdout.strip()
    RESULTS["environment"] = info
    log("environment:", json.dumps(info))


def smoke() -> None:
    """Max error against float64 for a few cases (the conformance run judges properly; this only fails fast)."""
    rows = []
    g = torch.Generator().manual_seed(0)
    cases = [(torch.bfloat16, None, False), (torch.bfloat16, "bottom_right", True), (torch.float16, "top_left", False),
             (torch.float32, "bottom_right", True)]
    for dtype, causal, masked in cases:
        q, k, v = (torch.randn(2, 300, 4, 64, generator=g).to(DEVICE, dtype).requires_grad_() for _ in range(3))
        kpm = (torch.rand(2, 300, generator=g) < 0.8).to(DEVICE) if masked else None
        out = TRITON(q, k, v, key_padding_mask=kpm, causal=causal)
        dout = torch.randn_like(out)
        out.backward(dout)
        leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
        ref = reference_attention(*leaves, key_padding_mask=kpm, causal=causal)
        ref.backward(dout.double())
        errors = [(out.double() - ref).abs().max().item()]
        errors += [(t.grad.double() - r.grad).abs().max().item() for t, r in zip((q, k, v), leaves)]
        rows.append(dict(dtype=str(dtype), causal=causal, masked=masked, max_errors_out_dq_dk_dv=errors))
        log(f"smoke {dtype} causal={causal} mask={masked}: max|err| out/dq/dk/dv",
            " ".join(f"{e:.2e}" for e in errors))
    RESULTS["smoke"] = rows
    save()


# ---- 2. conformance --------------------------------------------------------------------------------------------


def conformance() -> None:
    timeout = max(60, min(330, left() - 170))
    args = [sys.executable, "-m", "pytest", "conformance", "tests/test_triton_kernel.py", "-q", "-p",
            "no:cacheprovider", "--impl", "triton-flash,tiled-pytorch", "--device", DEVICE.type,
            "--conformance-report", str(OUT / "conformance"), "-W", "ignore::DeprecationWarning",
            *shlex.split(os.environ.get("CONF_ARGS", ""))]
    if _have_xdist():
        args += ["-n", "2" if DRY else "8"]  # compilations in parallel; the matrix is gathered by the controller
    log(f"conformance: {args[1:]} (timeout {timeout:.0f} s)")
    t0 = time.monotonic()
    with open(OUT / "conformance.log", "w") as sink:
        try:
            proc = subprocess.run(args, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    text = (OUT / "conformance.log").read_text()
    summary = [line for line in text.splitlines() if " passed" in line or " failed" in line or "error" in line.lower()]
    failures = [line for line in text.splitlines() if line.startswith("FAILED") or line.startswith("ERROR")]
    RESULTS["conformance"] = dict(returncode=rc, seconds=round(time.monotonic() - t0, 1),
                                  summary=summary[-3:], failures=failures[:60])
    log(f"conformance: exit {rc} after {time.monotonic() - t0:.0f} s;", summary[-1:] if summary else "no summary")
    for line in failures[:40]:
        log("  ", line[:300])
    save()


def conformance_extra() -> None:
    """More triton-flash runs, no matrix (the seed-0 run above is the record; outcomes in results.json and
    conformance_extra.log): other random inputs (seed 1); the hypothesis properties with 300 examples each; and the
    float32 probe, a variant declaring float32 on CUDA too (scripts/triton_fp32_probe.py), against every contract."""
    runs = {
        "seed 1": (["conformance", "tests/test_triton_kernel.py", "--attnconf-seed", "1"], "triton-flash"),
        "thorough hypothesis": (["conformance", "--hypothesis-profile=thorough", "--attnconf-seed", "2", "-k",
                                 "random_shapes or random_masks or each_sequence_alone"], "triton-flash"),
        "float32 probe": (["conformance", "--impl-module", "triton_fp32_probe:variant"], "triton-flash-fp32"),
    }
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "scripts"), os.environ.get("PYTHONPATH", "")]))
    RESULTS["conformance_extra"] = {}
    for name, (extra, impl_name) in runs.items():
        if DRY or left() < 200:
            continue
        args = [sys.executable, "-m", "pytest", *extra, "-q", "-p", "no:cacheprovider", "--impl", impl_name,
                "--device", DEVICE.type, "--conformance-report", "none", "-W", "ignore::DeprecationWarning"]
        if _have_xdist():
            args += ["-n", "8"]
        t0 = time.monotonic()
        with open(OUT / "conformance_extra.log", "a") as sink:
            sink.write(f"\n==== {name}: {' '.join(args[1:])}\n")
            sink.flush()
            try:
                rc = subprocess.run(args, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                    timeout=max(60, left() - 190)).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        text = (OUT / "conformance_extra.log").read_text().split(f"==== {name}:")[-1]
        lines = text.splitlines()
        summary = [line for line in lines if " passed" in line or " failed" in line]
        failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
        RESULTS["conformance_extra"][name] = dict(returncode=rc, seconds=round(time.monotonic() - t0, 1),
                                                  summary=summary[-1:], failures=failures[:40])
        log(f"conformance {name}: exit {rc} after {time.monotonic() - t0:.0f} s;", summary[-1:])
        for line in failures[:20]:
            log("  ", line[:300])
        save()


def _have_xdist() -> bool:
    try:
        import xdist  # noqa: F401
    except ImportError:
        return False
    return True


def float32_diagnostic() -> None:
    """float32 is not declared on CUDA: how far its errors sit from the bound, in the cases that failed before."""
    from attnconf.checks import compare_all, dense_references, run_dense
    from attnconf.inputs import DenseCase, make_dense_inputs

    cases = [DenseCase(batch=1, seqlen_q=1025, seqlen_k=1025, heads_q=1, heads_kv=1, causal=c, backward=True)
             for c in (None, "bottom_right")]
    cases += [DenseCase(seqlen_q=65, seqlen_k=65, causal="top_left", backward=True),
              DenseCase(seqlen_q=70, seqlen_k=70, magnitude=10.0, backward=True),
              DenseCase(batch=1, seqlen_q=1, seqlen_k=1, heads_q=1, heads_kv=1, backward=True)]
    rows = []
    for case in cases[:2] if DRY else cases:
        for seed in range(1 if DRY else 4):
            if left() < 120:
                break
            inputs = make_dense_inputs(case, DEVICE, torch.Generator().manual_seed(seed))
            actual = run_dense(TRITON, case, inputs)
            ratios = {c.tensor: c.ratio for c in compare_all(actual, dense_references(case, inputs))}
            rows.append(dict(case=str(case), seed=seed, ratios=ratios))
            log("float32", case, f"seed {seed}:", " ".join(f"{n} {r:.2f}" for n, r in ratios.items()))
    RESULTS["float32_diagnostic"] = rows
    save()


# ---- 3. memory --------------------------------------------------------------------------------------------------


def memory() -> None:
    seqlens = [128, 256] if DRY else [1024, 2048, 4096, 8192, 16384]
    dtype = torch.float32 if DRY else torch.bfloat16
    rows = []
    eager_failed = {"fwd": False, "fwd_bwd": False}
    for seqlen in seqlens:
        row = {"seqlen": seqlen}
        for name in ("triton-flash", "eager"):
            for pass_ in ("fwd", "fwd_bwd"):
                key = f"{name}/{pass_}"
                if left() < 60 or (name == "eager" and eager_failed[pass_]):
                    row[key] = None
                    continue
                try:
                    row[key] = memory_above_io(IMPLS[name], DEVICE, dtype, seqlen, pass_ == "fwd_bwd")
                except torch.OutOfMemoryError:
                    row[key] = "OOM"
                    eager_failed[pass_] = name == "eager"
                except Exception as exc:  # e.g. no CPU profiler events in a dry run: recorded, not fatal
                    row[key] = f"{type(exc).__name__}"
                if DEVICE.type == "cuda":
                    torch.cuda.empty_cache()
        rows.append(row)
        log("memory", json.dumps(row))
        RESULTS["memory"] = rows
        save()
    write_memory_table(rows, dtype)


def _mib(value) -> str:
    if value is None:
        return "not run"
    if isinstance(value, str):
        return value
    return f"{value / 2**20:,.1f}"


def write_memory_table(rows, dtype) -> None:
    env = RESULTS.get("environment", {})
    lines = [
        "# Peak memory above inputs and outputs: triton-flash vs eager",
        "",
        f"{env.get('device_name')}, torch {env.get('torch')}, triton {env.get('triton')}, {env.get('date', '')[:10]}. "
        f"B = 2, H = 16, D = 64, {str(dtype).replace('torch.', '')}; MiB of `torch.cuda.max_memory_allocated` during "
        "one call beyond what was allocated before it (the inputs) and beyond the outputs it returns (out; dQ, dK, "
        "dV for forward+backward): the measurement of contract MEM-1 (`conformance/test_memory.py`). "
        "Growth: this row over the row above (2 = linear, 4 = quadratic in S).",
        "",
        "| S | triton-flash fwd | growth | triton-flash fwd+bwd | growth | eager fwd | growth | eager fwd+bwd "
        "| growth |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    previous = {}
    for row in rows:
        cells = [str(row["seqlen"])]
        for key in ("triton-flash/fwd", "triton-flash/fwd_bwd", "eager/fwd", "eager/fwd_bwd"):
            value, before = row.get(key), previous.get(key)
            cells.append(_mib(value))
            numeric = isinstance(value, int) and isinstance(before, int) and before > 0
            cells.append(f"{value / before:.2f}x" if numeric else "")
            previous[key] = value
        lines.append("| " + " | ".join(cells) + " |")
    (OUT / "memory.md").write_text("\n".join(lines) + "\n")


# ---- 4-6. timing ------------------------------------------------------------------------------------------------


def bench_ms(fn, grads=()) -> float:
    if DRY:
        fn()
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    import triton.testing

    return triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=list(grads), return_mode="median")


def ceilings() -> None:
    n = 512 if DRY else 8192
    a, b = (torch.randn(n, n, device=DEVICE, dtype=torch.float32 if DRY else torch.bfloat16) for _ in range(2))
    ms = bench_ms(lambda: a @ b)
    src = torch.randn((1 << 20) if DRY else (1 << 28), device=DEVICE)  # 1 GiB of float32 on the GPU
    dst = torch.empty_like(src)
    copy_ms = bench_ms(lambda: dst.copy_(src))
    RESULTS["ceilings"] = dict(matmul_tflops=2 * n**3 / ms / 1e9, copy_tb_per_s=2 * src.numel() * 4 / copy_ms / 1e9,
                               matmul_n=n)
    log("ceilings", json.dumps(RESULTS["ceilings"]))
    save()


def attention_runner(impl, batch, seqlen, heads, head_dim, dtype, causal: bool, backward: bool):
    shape = (batch, seqlen, heads, head_dim)
    q, k, v = (torch.randn(shape, device=DEVICE, dtype=dtype).requires_grad_(backward) for _ in range(3))
    dout = torch.randn(shape, device=DEVICE, dtype=dtype)
    options = {"causal": TOP_LEFT} if causal else {}

    if not backward:
        def run():
            with torch.no_grad():
                impl(q, k, v, **options)
        return run, ()

    def run():
        impl(q, k, v, **options).backward(dout)
    return run, (q, k, v)


def tflops(batch, seqlen, heads, head_dim, causal, backward, ms) -> float:
    flops = forward_flops([seqlen] * batch, [seqlen] * batch, heads, head_dim, TOP_LEFT if causal else None)
    if backward:
        flops *= 1 + BACKWARD_FLOP_FACTOR
    return flops / (ms * 1e-3) / 1e12


SWEEP = {  # bf16 tile candidates per kernel (block_m, block_n, num_warps, num_stages); the first is the default
    ("forward", 64): [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3)],
    ("dkdv", 64): [(64, 64, 4, 3), (128, 64, 8, 3), (64, 128, 8, 3), (32, 128, 4, 3)],
    ("dq", 64): [(128, 32, 4, 3), (128, 64, 8, 3), (64, 64, 4, 3), (128, 32, 8, 3)],
    ("forward", 128): [(128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3)],
    ("dkdv", 128): [(64, 64, 8, 3), (128, 64, 8, 3)],
    ("dq", 128): [(128, 32, 8, 3), (64, 32, 4, 3), (128, 64, 8, 3)],
}


def sweep() -> None:
    """Time each kernel's tile candidates at S = 4096 (others at their defaults): forward alone, dkdv and dq
    through forward+backward (the forward's share is the same for each candidate)."""
    rows = []
    seqlen, batch, heads = (256, 1, 2) if DRY else (4096, 8, 16)
    for (kernel, head_dim), candidates in SWEEP.items():
        key = (kernel, False, head_dim)
        default = triton_flash.GPU_BLOCKS[key]
        for causal in (False, True):
            for cand in candidates:
                if left() < 150:
                    break
                triton_flash.GPU_BLOCKS[key] = triton_flash.Blocks(*cand)
                backward = kernel != "forward"
                try:
                    run, grads = attention_runner(TRITON, batch, seqlen, heads, head_dim, torch.bfloat16, causal,
                                                  backward)
                    ms = bench_ms(run, grads)
                    result = dict(ms=ms, tflops=tflops(batch, seqlen, heads, head_dim, causal, backward, ms))
                except Exception as exc:  # a candidate that fails to compile (resources) is reported, not fatal
                    result = dict(error=f"{type(exc).__name__}: {str(exc)[:200]}")
                row = dict(kernel=kernel, head_dim=head_dim, causal=causal, blocks=cand,
                           timed="fwd" if kernel == "forward" else "fwd+bwd", **result)
                rows.append(row)
                log("sweep", json.dumps(row))
            triton_flash.GPU_BLOCKS[key] = default
    RESULTS["sweep"] = rows
    save()


def timings() -> None:
    rows = []
    # S = 1024 again at the end: the first run's 1024 row looked slow for its size (an order effect?)
    seqlens = [64, 64] if DRY else [1024, 2048, 4096, 8192, 16384, 1024]
    names = [n for n in ("triton-flash", "sdpa-flash", "sdpa-cudnn") if IMPLS[n].unavailable_reason() is None
             and IMPLS[n].capabilities.missing(device=DEVICE, dtype=torch.bfloat16) is None]
    dtype = torch.float32 if DRY else torch.bfloat16
    for repeat, seqlen in enumerate(seqlens):
        batch = 1 if DRY else 8 if seqlen <= 4096 else 4
        repeated = seqlen in seqlens[:repeat]
        for causal in (False, True):
            for backward in (False, True):
                for name in names:
                    if left() < 25:
                        break
                    try:
                        run, grads = attention_runner(IMPLS[name], batch, seqlen, 16, 64, dtype, causal, backward)
                        ms = bench_ms(run, grads)
                        result = dict(ms=ms, tflops=tflops(batch, seqlen, 16, 64, causal, backward, ms))
                    except Exception as exc:
                        result = dict(error=f"{type(exc).__name__}: {str(exc)[:200]}")
                    row = dict(impl=name, batch=batch, seqlen=seqlen, causal=causal, repeat=repeated,
                               pass_="fwd+bwd" if backward else "fwd", **result)
                    rows.append(row)
                    log("timing", json.dumps(row))
        RESULTS["timings"] = rows
        save()
        write_timing_table(rows, names)


def write_timing_table(rows, names) -> None:
    env = RESULTS.get("environment", {})
    lines = [
        "# triton-flash timings",
        "",
        f"{env.get('device_name')}, torch {env.get('torch')}, triton {env.get('triton')}, cuDNN {env.get('cudnn')}, "
        f"{env.get('date', '')[:10]}. bf16, H = 16, D = 64, B = 8 (S <= 4096) or 4; TFLOP/s from the median of "
        "`triton.testing.do_bench` (cache flushed between calls); FLOPs 4·B·H·D·(visible pairs), x3.5 for "
        "forward+backward.",
        "",
        "| S | mask | pass | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    table = {(r["seqlen"], r["causal"], r["pass_"], r["impl"], r.get("repeat", False)): r for r in rows}
    for seqlen, repeated in sorted({(r["seqlen"], r.get("repeat", False)) for r in rows}):
        for causal in (False, True):
            for pass_ in ("fwd", "fwd+bwd"):
                cells = []
                for name in names:
                    r = table.get((seqlen, causal, pass_, name, repeated))
                    if r is None:
                        cells.append("not run")
                    elif "error" in r:
                        cells.append("error")
                    else:
                        cells.append(f"{r['tflops']:.0f} ({r['ms']:.2f} ms)")
                label = f"{seqlen} (again, last)" if repeated else str(seqlen)
                lines.append(f"| {label} | {'causal' if causal else 'full'} | {pass_} | " + " | ".join(cells) + " |")
    if RESULTS.get("ceilings"):
        c = RESULTS["ceilings"]
        lines += ["", f"Ceilings measured in the same run: bf16 {c['matmul_n']}³ matrix product "
                      f"{c['matmul_tflops']:.0f} TFLOP/s; device-to-device copy {c['copy_tb_per_s']:.2f} TB/s."]
    if RESULTS.get("sweep"):
        lines += ["", "## Tile sweep (bf16, B = 8, H = 16, S = 4096)", "",
                  "| kernel | D | mask | BLOCK_M, BLOCK_N, warps, stages | timed | TFLOP/s |",
                  "|---|---|---|---|---|---|"]
        for r in RESULTS["sweep"]:
            value = "error" if "error" in r else f"{r['tflops']:.0f}"
            lines.append(f"| {r['kernel']} | {r['head_dim']} | {'causal' if r['causal'] else 'full'} | "
                         f"{', '.join(map(str, r['blocks']))} | {r['timed']} | {value} |")
    (OUT / "timings.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    environment()
    smoke()
    conformance()
    conformance_extra()
    float32_diagnostic()
    memory()
    ceilings()
    sweep()
    timings()
    log(f"done in {time.monotonic() - STARTED:.0f} s")


if __name__ == "__main__":
    main()
