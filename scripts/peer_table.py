"""The peer table of issue 16 from one saved benchmark run: triton-flash beside the peers, and its ratios.

    python3 scripts/peer_table.py RUN.json [--info SUMMARY.txt] [--output reports/peers/<storage>.md] [--ours NAME]

RUN.json is one pytest-benchmark run of the ``peers`` set (``--bench-set peers``: bf16, head dim 64, 16 heads,
S = 1k, 4k, 16k, full and causal, forward and forward+backward; dense batches of 16k tokens and packed batches of
16k / S sequences of S/2 to S tokens), saved by
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
PEERS = ["sdpa-cudnn", "flash-attn4", "flash-attn2", "sdpa-flash", "flex-compiled", "torch-varlen"]
# packed batches: the implementations with a varlen entry point (cuDNN and SDPA flash declare none on CUDA)
PACKED_PEERS = ["flash-attn4", "flash-attn2", "torch-varlen", "flex-compiled"]
TITLES = {"triton-flash": "triton-flash", "sdpa-cudnn": "cuDNN (SDPA)", "flash-attn4": "FA4 (`flash-attn-4`)",
          "flash-attn2": "flash-attn 2", "sdpa-flash": "SDPA flash", "flex-compiled": "Flex compiled",
          "torch-varlen": "torch varlen_attn"}
HEADS = 16  # the peers set's; --heads reads another set's runs (the gpu set has 32 at head dim 64)
ROWS = [(s, causal) for s in (1024, 4096, 16384) for causal in (False, True)]
PASSES = ("fwd", "fwd_bwd")


def rates(run: dict, heads: int = HEADS) -> dict[tuple, float]:
    """(impl, S, causal, pass[, "varlen"]) -> TFLOP/s of the median round, bf16 head dim 64 cases only.

    Dense keys have four parts (as before packed rows existed), packed ones a fifth, "varlen"."""
    out = {}
    for bench in run["benchmarks"]:
        info = bench.get("extra_info") or {}
        layout = info.get("layout")
        if layout not in ("dense", "varlen") or (info.get("head_dim"), info.get("dtype"), info.get("heads")) != (
                64, "bf16", heads):
            continue
        if info.get("tflops") is None:
            continue
        key = (info.get("impl") or bench["params"]["impl"], info["seqlen"], info["causal"], info["pass"])
        out[key + (("varlen",) if layout == "varlen" else ())] = info["tflops"]
    return out


def _key(impl: str, s: int, causal: bool, p: str, packed: bool) -> tuple:
    return (impl, s, causal, p) + (("varlen",) if packed else ())


def cell(values: dict, impl: str, s: int, causal: bool, packed: bool = False) -> str:
    parts = [values.get(_key(impl, s, causal, p, packed)) for p in PASSES]
    return " / ".join("–" if v is None else f"{v:.0f}" for v in parts)


def ratio(values: dict, s: int, causal: bool, p: str, peer: str | None, packed: bool = False) -> str:
    ours = values.get(_key(OURS, s, causal, p, packed))
    theirs = values.get(_key(peer, s, causal, p, packed)) if peer else None
    return "–" if ours is None or not theirs else f"{ours / theirs:.2f}"


def best_peer(values: dict, s: int, causal: bool, p: str, packed: bool = False) -> str | None:
    peers = PACKED_PEERS if packed else PEERS
    found = [(values[_key(peer, s, causal, p, packed)], peer) for peer in peers
             if _key(peer, s, causal, p, packed) in values]
    return max(found)[1] if found else None


def _lengths(run: dict, s: int) -> list[int] | None:
    for bench in run["benchmarks"]:
        info = bench.get("extra_info") or {}
        if info.get("layout") == "varlen" and info.get("seqlen") == s and info.get("lengths"):
            return info["lengths"]
    return None


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
        f"triton {machine.get('triton')}, flash-attn {machine.get('flash_attn')}. bf16, head dim 64, {heads} heads. "
        "TFLOP/s of the median round, forward / forward+backward (FLOPs = 4·B·H·D "
        "times the visible (query, key) pairs, about S²/2 for causal; forward+backward 3.5×).",
        "",
    ]
    if info.strip():
        lines += ["The run's summary:", "", "```", info.strip(), "```", ""]
    lines += ["## Dense: B·S = 16384 tokens", "",
              "| S, mask | " + " | ".join(TITLES[i] for i in [OURS, *PEERS]) + " |",
              "|---|" + "---|" * (1 + len(PEERS))]
    for s, causal in ROWS:
        lines.append(f"| {label(s, causal)} | " + " | ".join(cell(values, i, s, causal) for i in [OURS, *PEERS]) + " |")
    lines += ["", f"Ratios of {TITLES[OURS]} to the best peer (named), to cuDNN and to flash-attn 2, forward / forward+backward "
              f"(above 1: {TITLES[OURS]} is faster):", "",
              "| S, mask | best peer fwd | ÷ best fwd | best peer fwd+bwd | ÷ best fwd+bwd | ÷ cuDNN | ÷ flash-attn 2 |",
              "|---|---|---|---|---|---|---|"]
    for s, causal in ROWS:
        best = {p: best_peer(values, s, causal, p) for p in PASSES}
        lines.append(
            f"| {label(s, causal)} | {best['fwd'] or '–'} | {ratio(values, s, causal, 'fwd', best['fwd'])} | "
            f"{best['fwd_bwd'] or '–'} | {ratio(values, s, causal, 'fwd_bwd', best['fwd_bwd'])} | "
            + " / ".join(ratio(values, s, causal, p, "sdpa-cudnn") for p in PASSES) + " | "
            + " / ".join(ratio(values, s, causal, p, "flash-attn2") for p in PASSES) + " |")
    impls = [OURS, *PEERS]
    packed_rows = any(len(k) == 5 for k in values)
    if packed_rows:
        sizes = ", ".join(f"S = {s // 1024}k: {len(ls)} × {min(ls)}–{max(ls)} = {sum(ls)} tokens"
                          for s in sorted({s for s, _ in ROWS}) if (ls := _lengths(run, s)))
        lines += ["", "## Packed (varlen, cu_seqlens): 16k / S sequences of S/2 to S tokens", "",
                  f"Sequence lengths spread evenly ({sizes}). cuDNN and SDPA flash take no packed batch on CUDA.", "",
                  "| S, mask | " + " | ".join(TITLES[i] for i in [OURS, *PACKED_PEERS]) + " |",
                  "|---|" + "---|" * (1 + len(PACKED_PEERS))]
        for s, causal in ROWS:
            lines.append(f"| {label(s, causal)} | "
                         + " | ".join(cell(values, i, s, causal, True) for i in [OURS, *PACKED_PEERS]) + " |")
        lines += ["", f"Ratios of packed {TITLES[OURS]} to the best packed peer (named) and to flash-attn 2 varlen, and packed "
                  f"over dense at the same S for {TITLES[OURS]} and the best packed peer (1.00: a packed batch at the dense "
                  "batch's rate), forward / forward+backward:", "",
                  "| S, mask | best peer fwd | ÷ best fwd | best peer fwd+bwd | ÷ best fwd+bwd | ÷ flash-attn 2 | "
                  f"{TITLES[OURS]} packed ÷ dense | best peer packed ÷ dense |",
                  "|---|---|---|---|---|---|---|---|"]
        for s, causal in ROWS:
            best = {p: best_peer(values, s, causal, p, True) for p in PASSES}

            def own(impl, p):
                packed, dense = values.get(_key(impl, s, causal, p, True)), values.get(_key(impl, s, causal, p, False))
                return "–" if not packed or not dense else f"{packed / dense:.2f}"

            lines.append(
                f"| {label(s, causal)} | {best['fwd'] or '–'} | {ratio(values, s, causal, 'fwd', best['fwd'], True)} | "
                f"{best['fwd_bwd'] or '–'} | {ratio(values, s, causal, 'fwd_bwd', best['fwd_bwd'], True)} | "
                + " / ".join(ratio(values, s, causal, p, "flash-attn2", True) for p in PASSES) + " | "
                + " / ".join(own(OURS, p) for p in PASSES) + " | "
                + " / ".join(own(best[p], p) if best[p] else "–" for p in PASSES) + " |")
    missing = sorted({i for i in impls for s, c in ROWS for p in PASSES if (i, s, c, p) not in values})
    missing_packed = sorted({i for i in [OURS, *PACKED_PEERS] for s, c in ROWS for p in PASSES
                             if _key(i, s, c, p, True) not in values}) if packed_rows else []
    if missing or missing_packed:
        lines += ["", "Cells marked – were not measured in this run: "
                  + "; ".join(part for part in (
                      "dense: " + ", ".join(missing) if missing else "",
                      "packed: " + ", ".join(missing_packed) if missing_packed else "") if part)
                  + " (see the run's log)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    global OURS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="one saved pytest-benchmark run (JSON) of the peers set")
    parser.add_argument("--info", type=Path, default=None, help="the run's summary.txt, copied into the header")
    parser.add_argument("--output", type=Path, default=None, help="Markdown file to write (default: print)")
    parser.add_argument("--heads", type=int, default=HEADS, help="the cases' head count (default 16)")
    parser.add_argument("--ours", default=OURS, help="the implementation whose column and ratios lead "
                        "(default triton-flash; e.g. a variant of it timed in the same run)")
    parser.add_argument("--title", default=None, help="the column title of --ours (default: its name)")
    args = parser.parse_args(argv)
    OURS = args.ours
    TITLES[OURS] = args.title or TITLES.get(OURS, OURS)
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
