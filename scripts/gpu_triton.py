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
5. timings: forward and forward+backward TFLOP/s of the benchmark suite's peers cases (bf16, D = 64, H = 16,
   16k tokens, S = 1k, 4k, 16k, full and causal, dense) for triton-flash, sdpa-flash and sdpa-cudnn.

Every time here is the benchmark suite's (attnconf.benchmarking.time_rounds: its warm-up, device clock with the
host's head start, fresh inputs and cache flush per round, the peers set's rounds), so these figures and a saved
run of `pytest benchmarks --bench-set peers` measure the same thing. Tile candidates: scripts/gpu_triton_tiles.py.

Files in $OUT: gpu_triton.log, results.json (everything), memory.md, timings.md, conformance.log,
conformance_extra.log, conformance/*.
DRY=1 runs every phase on the CPU with tiny sizes (no timings worth reading): a check of this script itself;
CONF_ARGS adds pytest arguments to the conformance run (e.g. CONF_ARGS='-k causal' for a short dry run).
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import statistics
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
from attnconf.benchmarking import (  # noqa: E402
    BenchCase, CacheFlusher, Runner, case_flops, machine_info, make_runner, peers_set, set_rounds, skip_reason,
    time_rounds, use_device_clock,
)
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


# pytest through scripts/gpu_plugins.sh: on the device the checkout is not pip-installed, so the suite's plugins
# (--impl, --device, ...) load by name there; where attnconf is installed it sets nothing
PYTEST = ["bash", "-c", 'source scripts/gpu_plugins.sh && exec "$@"', "pytest", sys.executable, "-m", "pytest"]


def conformance() -> None:
    timeout = max(60, min(330, left() - 170))
    args = [*PYTEST, "conformance", "tests/test_triton_kernel.py", "-q", "-p",
            "no:cacheprovider", "--impl", "triton-flash,tiled-pytorch", "--device", DEVICE.type,
            "--conformance-report", str(OUT / "conformance"), "-W", "ignore::DeprecationWarning",
            *shlex.split(os.environ.get("CONF_ARGS", ""))]
    if _have_xdist():
        args += ["-n", "2" if DRY else "8"]  # compilations in parallel; the matrix is gathered by the controller
    log(f"conformance: {args[len(PYTEST) - 1:]} (timeout {timeout:.0f} s)")
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
        args = [*PYTEST, *extra, "-q", "-p", "no:cacheprovider", "--impl", impl_name,
                "--device", DEVICE.type, "--conformance-report", "none", "-W", "ignore::DeprecationWarning"]
        if _have_xdist():
            args += ["-n", "8"]
        t0 = time.monotonic()
        with open(OUT / "conformance_extra.log", "a") as sink:
            sink.write(f"\n==== {name}: {' '.join(args[len(PYTEST) - 1:])}\n")
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


# ---- 4-5. timing ------------------------------------------------------------------------------------------------


ROUNDS = {**set_rounds("peers"), **({"min_rounds": 2} if DRY else {})}


def suite_seconds(runner: Runner) -> float:
    """Median seconds of ``runner``'s rounds, timed as the benchmark suite times them."""
    return statistics.median(time_rounds(runner, DEVICE, **ROUNDS))


def operation_runner(operation, flush) -> Runner:
    """A ceiling's operation as a suite runner: a cache flush before each round, nothing else untimed."""
    def setup():
        flush()
        return (), {}
    return Runner(setup, lambda: operation())


def ceilings(flush) -> None:
    n = 512 if DRY else 8192
    a, b = (torch.randn(n, n, device=DEVICE, dtype=torch.float32 if DRY else torch.bfloat16) for _ in range(2))
    matmul = suite_seconds(operation_runner(lambda: a @ b, flush))
    src = torch.randn((1 << 20) if DRY else (1 << 28), device=DEVICE)  # 1 GiB of float32 on the GPU
    dst = torch.empty_like(src)
    copy = suite_seconds(operation_runner(lambda: dst.copy_(src), flush))
    RESULTS["ceilings"] = dict(matmul_tflops=2 * n**3 / matmul / 1e12, copy_tb_per_s=2 * src.numel() * 4 / copy / 1e12,
                               matmul_n=n)
    log("ceilings", json.dumps(RESULTS["ceilings"]))
    save()


def timing_cases() -> list[BenchCase]:
    if DRY:
        return [BenchCase("dense", pass_, 64, 1, 2, 64, torch.float32, causal)
                for causal in (False, True) for pass_ in ("fwd", "fwd_bwd")]
    return [case for case in peers_set() if case.layout == "dense"]


def timings(flush) -> None:
    rows = []
    names = [n for n in ("triton-flash", "sdpa-flash", "sdpa-cudnn") if IMPLS[n].unavailable_reason() is None]
    for case in timing_cases():
        for name in names:
            if left() < 25:
                break
            row = dict(impl=name, case=case.id, seqlen=case.seqlen, batch=case.batch, causal=case.causal,
                       pass_=case.pass_)
            reason = skip_reason(IMPLS[name], case, DEVICE)
            if reason is not None:
                row["skipped"] = reason
            else:
                try:
                    seconds = suite_seconds(make_runner(IMPLS[name], case, DEVICE, flush))
                    row.update(ms=seconds * 1e3, tflops=case_flops(case) / seconds / 1e12)
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
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
        f"{env.get('date', '')[:10]}. The benchmark suite's peers cases, dense: bf16, H = 16, D = 64, 16k tokens "
        "(B = 16k / S); TFLOP/s from the median round of the suite's timing (device clock, fresh inputs and cache "
        "flush per round); FLOPs 4·B·H·D·(visible pairs), x3.5 for forward+backward.",
        "",
        "| S | B | mask | pass | " + " | ".join(names) + " |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    table = {(r["seqlen"], r["causal"], r["pass_"], r["impl"]): r for r in rows}
    batches = {r["seqlen"]: r["batch"] for r in rows}
    for seqlen in sorted(batches):
        for causal in (False, True):
            for pass_ in ("fwd", "fwd_bwd"):
                cells = []
                for name in names:
                    r = table.get((seqlen, causal, pass_, name))
                    if r is None:
                        cells.append("not run")
                    elif "skipped" in r:
                        cells.append("skipped")
                    elif "error" in r:
                        cells.append("error")
                    else:
                        cells.append(f"{r['tflops']:.0f} ({r['ms']:.2f} ms)")
                mask = "causal" if causal else "full"
                lines.append(f"| {seqlen} | {batches[seqlen]} | {mask} | {pass_} | " + " | ".join(cells) + " |")
    if RESULTS.get("ceilings"):
        c = RESULTS["ceilings"]
        lines += ["", f"Ceilings measured in the same run: bf16 {c['matmul_n']}³ matrix product "
                      f"{c['matmul_tflops']:.0f} TFLOP/s; device-to-device copy {c['copy_tb_per_s']:.2f} TB/s."]
    (OUT / "timings.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    environment()
    smoke()
    conformance()
    conformance_extra()
    float32_diagnostic()
    memory()
    use_device_clock(DEVICE)  # the suite's clock for the timed phases, as its plugin selects it
    flush = CacheFlusher(DEVICE)
    ceilings(flush)
    timings(flush)
    log(f"done in {time.monotonic() - STARTED:.0f} s")


if __name__ == "__main__":
    main()
