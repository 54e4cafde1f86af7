"""The peer table of issue 16 from one saved benchmark run: triton-flash beside the peers, and its ratios.

    python3 scripts/peer_table.py RUN.json [--info SUMMARY.txt] [--output reports/peers/<storage>.md]

RUN.json is one pytest-benchmark run of the ``peers`` set (``--bench-set peers``: bf16, head dim 64, 16 heads,
16k tokens per batch, S = 1k, 4k, 16k, full and causal, forward and forward+backward), saved by
``scripts/gpu_bench.sh baseline`` (see the README's Results table). Each cell is TFLOP/s from the median round
(``extra_info["tflops"]``: FLOPs = 4·B·H·S²·D over the visible pairs, forward+backward 3.5×), forward / forward+backward.
SUMMARY.txt (the run's summary.txt: date, GPU, driver) is copied into the header. Only the one run is read: the
ratios compare numbers taken on one GPU in one process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

OURS = "triton-flash"
PEERS = ["sdpa-cudnn", "flash-attn4", "flash-attn2", "sdpa-flash", "flex-compiled"]
TITLES = {"triton-flash": "triton-flash", "sdpa-cudnn": "cuDNN (SDPA)", "flash-attn4": "FA4 (`flash-attn-4`)",
          "flash-attn2": "flash-attn 2", "sdpa-flash": "SDPA flash", "flex-compiled": "Flex compiled"}
HEADS = 16  # the peers set's; --heads reads another set's runs (the gpu set has 32 at head dim 64)
ROWS = [(s, causal) for s in (1024, 4096, 16384) for causal in (False, True)]
PASSES = ("fwd", "fwd_bwd")


def rates(run: dict, heads: int = HEADS) -> dict[tuple, float]:
    """(impl, S, causal, pass) -> TFLOP/s of the median round, dense bf16 head dim 64 cases only."""
    out = {}
    for bench in run["benchmarks"]:
        info = bench.get("extra_info") or {}
        if (info.get("layout"), info.get("head_dim"), info.get("dtype"), info.get("heads")) != ("dense", 64, "bf16", heads):
            continue
        if info.get("tflops") is None:
            continue
        out[(info.get("impl") or bench["params"]["impl"], info["seqlen"], info["causal"], info["pass"])] = info["tflops"]
    return out


def cell(values: dict, impl: str, s: int, causal: bool) -> str:
    parts = [values.get((impl, s, causal, p)) for p in PASSES]
    return " / ".join("–" if v is None else f"{v:.0f}" for v in parts)


def ratio(values: dict, s: int, causal: bool, p: str, peer: str | None) -> str:
    ours = values.get((OURS, s, causal, p))
    theirs = values.get((peer, s, causal, p)) if peer else None
    return "–" if ours is None or not theirs else f"{ours / theirs:.2f}"


def best_peer(values: dict, s: int, causal: bool, p: str) -> str | None:
    found = [(values[(peer, s, causal, p)], peer) for peer in PEERS if (peer, s, causal, p) in values]
    return max(found)[1] if found else None


def table(run: dict, info: str, heads: int = HEADS) -> str:
    values = rates(run, heads)
    machine = run.get("machine_info", {}).get("attnconf", {})
    commit = run.get("commit_info", {}).get("id")
    label = lambda s, c: f"{s // 1024}k {'causal' if c else 'full'}"  # noqa: E731
    lines = [
        f"# Peer table: {machine.get('device_name', '?')}, torch {machine.get('torch')}",
        "",
        f"One run of the benchmark suite (`--bench-set {run.get('attnconf', {}).get('bench_set')}`), {run.get('datetime', '?')[:19]} UTC, commit {commit}: "
        f"torch {machine.get('torch')} (CUDA {machine.get('cuda')}, cuDNN {machine.get('cudnn')}), "
        f"triton {machine.get('triton')}, flash-attn {machine.get('flash_attn')}. bf16, head dim 64, {heads} heads, "
        "B·S = 16384 tokens, dense. TFLOP/s of the median round, forward / forward+backward (FLOPs = 4·B·H·D "
        "times the visible (query, key) pairs, about S²/2 for causal; forward+backward 3.5×).",
        "",
    ]
    if info.strip():
        lines += ["The run's summary:", "", "```", info.strip(), "```", ""]
    lines += ["| S, mask | " + " | ".join(TITLES[i] for i in [OURS, *PEERS]) + " |",
              "|---|" + "---|" * (1 + len(PEERS))]
    for s, causal in ROWS:
        lines.append(f"| {label(s, causal)} | " + " | ".join(cell(values, i, s, causal) for i in [OURS, *PEERS]) + " |")
    lines += ["", f"Ratios of {OURS} to the best peer (named), to cuDNN and to flash-attn 2, forward / forward+backward "
              "(above 1: triton-flash is faster):", "",
              "| S, mask | best peer fwd | ÷ best fwd | best peer fwd+bwd | ÷ best fwd+bwd | ÷ cuDNN | ÷ flash-attn 2 |",
              "|---|---|---|---|---|---|---|"]
    for s, causal in ROWS:
        best = {p: best_peer(values, s, causal, p) for p in PASSES}
        lines.append(
            f"| {label(s, causal)} | {best['fwd'] or '–'} | {ratio(values, s, causal, 'fwd', best['fwd'])} | "
            f"{best['fwd_bwd'] or '–'} | {ratio(values, s, causal, 'fwd_bwd', best['fwd_bwd'])} | "
            + " / ".join(ratio(values, s, causal, p, "sdpa-cudnn") for p in PASSES) + " | "
            + " / ".join(ratio(values, s, causal, p, "flash-attn2") for p in PASSES) + " |")
    missing = sorted({i for i in [OURS, *PEERS] for s, c in ROWS for p in PASSES if (i, s, c, p) not in values})
    if missing:
        lines += ["", "Cells marked – were not measured in this run: " + ", ".join(missing) + " (see the run's log)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="one saved pytest-benchmark run (JSON) of the peers set")
    parser.add_argument("--info", type=Path, default=None, help="the run's summary.txt, copied into the header")
    parser.add_argument("--output", type=Path, default=None, help="Markdown file to write (default: print)")
    parser.add_argument("--heads", type=int, default=HEADS, help="the cases' head count (default 16)")
    args = parser.parse_args(argv)
    run = json.loads(args.run.read_text())
    text = table(run, args.info.read_text() if args.info else "", args.heads)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
