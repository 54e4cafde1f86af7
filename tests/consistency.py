"""The same verdict everywhere: the CPU conformance run of the built-in implementations, per test, under every
SIMD level torch can be told to use, one and two threads, and several seeds.

    python -m tests.consistency [--seeds 5]     # writes reports/verdicts/cpu-torch<version>.md

The baseline is a plain run (torch's own choice of SIMD kernels, 2 threads, seed 0). Each variant changes one
thing: ``ATEN_CPU_CAPABILITY`` = default, avx2, avx512; 1 thread; two pytest-xdist workers; ``--attnconf-seed``
1 .. seeds-1 (``--variants`` picks some). A test whose
outcome differs from the baseline is listed with both outcomes and the reason. A SIMD level this CPU lacks is not
run (torch does not fall back: it dies of an illegal instruction, SIGILL) and the table says so. Runs go through
``tests.mutants.kill_matrix.run_suite`` (the suite as a user runs it), two side by side.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from .mutants import kill_matrix

REPORT_DIR = kill_matrix.ROOT / "reports" / "verdicts"
BUILTIN = ["eager", "sdpa-math", "sdpa-flash", "tiled-pytorch", "triton-flash", "flex-eager", "flex-compiled"]


def variants(seeds: int) -> list[tuple[str, dict, list[str]]]:
    """(label, environment changes, extra pytest arguments), the baseline first."""
    out = [("baseline (2 threads, seed 0)", {"OMP_NUM_THREADS": "2"}, [])]
    for isa in ("default", "avx2", "avx512"):
        out.append((f"ATEN_CPU_CAPABILITY={isa}", {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": isa}, []))
    out.append(("1 thread", {"OMP_NUM_THREADS": "1"}, []))
    # the same tests spread over two pytest-xdist worker processes (each then draws its own hypothesis examples
    # from the same seed, and runs its tests in another order)
    out.append(("2 workers (-n 2)", {"OMP_NUM_THREADS": "1"}, ["-n", "2"]))
    for seed in range(1, seeds):
        out.append((f"--attnconf-seed {seed}", {"OMP_NUM_THREADS": "2"}, ["--attnconf-seed", str(seed)]))
    return out


def cpu_lacks(changes: dict) -> str | None:
    """Why this CPU cannot run a variant's SIMD level, or None."""
    needed = {"avx2": "avx2", "avx512": "avx512f"}.get(changes.get("ATEN_CPU_CAPABILITY", ""))
    if needed and needed not in cpu_flags().split():
        return f"not run: this CPU has no {needed} (torch dies of SIGILL there)"
    return None


def outcomes(records: list[dict]) -> dict[str, tuple[str, str]]:
    """nodeid -> (outcome, reason); a test counted under several contracts appears once."""
    return {rec["nodeid"]: (rec["outcome"], rec.get("reason", "")) for rec in records}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    simd = sorted({f for f in flags if f.startswith(("avx", "fma", "amx"))})
    return " ".join(simd) or "none of avx/fma/amx"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--impl", default=",".join(BUILTIN), help="implementations (default: the CPU built-ins)")
    parser.add_argument("--variants", default=None, metavar="LABELS",
                        help="comma-separated starts of the variants' labels to run besides the baseline, e.g. "
                        "'2 workers,1 thread' (default: all)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    chosen = None if args.variants is None else [label.strip() for label in args.variants.split(",")]
    names = args.impl.split(",")
    start = time.monotonic()
    runs = []
    with tempfile.TemporaryDirectory(prefix="attnconf-consistency-") as scratch:
        for n, (label, changes, extra) in enumerate(variants(args.seeds)):
            if n and chosen is not None and not label.startswith(tuple(chosen)):
                continue
            if cpu_lacks(changes):
                runs.append((label, cpu_lacks(changes)))
                continue
            env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"} | changes
            records, meta = kill_matrix.run_suite(Path(scratch) / f"v{n}", jobs=2, names=names, extra=extra, env=env)
            runs.append((label, outcomes(records)))
            print(f"{label}: {len(runs[-1][1])} tests", flush=True)
    seconds = time.monotonic() - start
    base_label, base = runs[0]
    lines = [
        "# Verdicts across SIMD levels, threads and seeds",
        "",
        f"Generated by `python -m tests.consistency --seeds {args.seeds}"
        + (f" --impl {args.impl}" if args.impl != ",".join(BUILTIN) else "")
        + (f" --variants '{args.variants}'" if args.variants is not None else "") + f"` on {datetime.date.today()}: "
        f"{cpu_name()} ({cpu_flags()}), torch {meta.get('torch')}, implementations {', '.join(names)}; "
        f"{seconds / 60:.0f} min.",
        "",
        "| run | tests | same outcome as the baseline | differing |",
        "|---|---|---|---|",
    ]
    differing: list[str] = []
    for label, result in runs:
        if isinstance(result, str):  # not run here, and why
            lines.append(f"| {label} | – | {result} | – |")
            continue
        diff = sorted(t for t in set(base) | set(result) if base.get(t, ("missing", ""))[0] != result.get(t, ("missing", ""))[0])
        lines.append(f"| {label} | {len(result)} | {len(result) - len(diff)} | {len(diff)} |")
        for t in diff:
            was, now = base.get(t, ("missing", "")), result.get(t, ("missing", ""))
            differing.append(f"- {label}: `{t}`: {was[0]} in the baseline, {now[0]} here"
                             + (f": {now[1][:300]}" if now[1] else ""))
    lines += ["", "## Tests whose outcome differs", ""] + (differing or ["None: every run gave every test the same outcome."])
    text = "\n".join(lines) + "\n"
    output = args.output or REPORT_DIR / f"cpu-torch{str(meta.get('torch')).split('+')[0]}.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(text)
    return 0 if not differing else 1


if __name__ == "__main__":
    sys.exit(main())
