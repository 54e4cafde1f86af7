"""The benchmark cases and their sets, and the FLOP model that turns a time into TFLOP/s."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch

from ..capabilities import BOTTOM_RIGHT, TOP_LEFT, Capabilities
from ..registry import Implementation

PASSES = ("fwd", "bwd", "fwd_bwd")
LAYOUTS = ("dense", "varlen")
BACKWARD_FLOP_FACTOR = 2.5  # the backward does 2.5x the forward's matmul work (5 products of the forward's 2)
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}

# ---- cases and the two benchmark sets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchCase:
    """One benchmarked shape and pass. ``causal`` is a square causal mask (Sq = Sk, so both alignments agree).

    Dense: ``batch`` sequences of ``seqlen``. Varlen: a packed batch of ``batch`` sequences whose lengths spread
    evenly from ``seqlen // 2`` to ``seqlen`` (fixed, so every run measures the same batch).
    """

    layout: str
    pass_: str
    seqlen: int
    batch: int
    heads: int
    head_dim: int
    dtype: torch.dtype
    causal: bool

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS or self.pass_ not in PASSES:
            raise ValueError(f"layout must be one of {LAYOUTS} and pass one of {PASSES}")

    @property
    def backward(self) -> bool:
        return self.pass_ != "fwd"

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype, str(self.dtype).replace("torch.", ""))

    @property
    def id(self) -> str:
        mask = "causal" if self.causal else "full"
        return f"{self.pass_}-{self.dtype_name}-D{self.head_dim}-H{self.heads}-B{self.batch}-S{self.seqlen}-{mask}"

    def lengths(self) -> list[int]:
        """The sequence lengths of the batch (all ``seqlen`` for dense)."""
        if self.layout == "dense" or self.batch == 1:
            return [self.seqlen] * self.batch
        low = self.seqlen // 2
        return [low + round(i * (self.seqlen - low) / (self.batch - 1)) for i in range(self.batch)]

    def needs(self) -> dict:
        """Capabilities this case needs, as keyword arguments of ``Capabilities.missing`` (causal apart)."""
        return dict(dtype=self.dtype, head_dim=self.head_dim, varlen=self.layout == "varlen",
                    backward=self.backward, seqlen=self.seqlen)

    def describe(self) -> dict:
        """JSON-friendly fields, stored in each result's ``extra_info``."""
        out = asdict(self)
        out["pass"] = out.pop("pass_")
        out["dtype"] = self.dtype_name
        if self.layout == "varlen":
            out["lengths"] = self.lengths()
        return out

    def __repr__(self) -> str:  # pytest-benchmark stores params with repr
        return f"{self.layout}:{self.id}"


def _cases(layout, passes, seqlens, dtypes, head_dims, causals, *, tokens=None, batch=1, heads=None):
    """Cartesian product; ``tokens`` fixes batch x seqlen (as flash-attention's benchmarks do); ``heads``: D -> H."""
    return [
        BenchCase(layout, p, s, max(1, tokens // s) if tokens else batch, heads[d], d, dt, c)
        for dt in dtypes for d in head_dims for p in passes for c in causals for s in seqlens
    ]


def cpu_set() -> list[BenchCase]:
    """A few minutes on a 2-core CPU; the memory plot still shows eager's quadratic growth."""
    fp32, both = [torch.float32], (False, True)
    return (
        _cases("dense", PASSES, (256, 512, 1024), fp32, (64,), both, heads={64: 4})
        + _cases("dense", ("fwd", "fwd_bwd"), (1024,), [torch.bfloat16], (64,), (False,), heads={64: 4})
        + _cases("varlen", ("fwd", "fwd_bwd"), (256, 1024), fp32, (64,), both, batch=4, heads={64: 4})
    )


def gpu_set() -> list[BenchCase]:
    """16k tokens per batch, heads x head_dim = 2048 (flash-attention's benchmark convention); head dim 64 first.

    Sized so that a baseline and a compared rerun of every implementation fit in one 9-minute device call.
    """
    bf16, both, tokens = [torch.bfloat16], (False, True), 16384
    heads = {64: 32, 128: 16}
    return (
        _cases("dense", PASSES, (1024, 2048, 4096, 8192, 16384), bf16, (64,), both, tokens=tokens, heads=heads)
        + _cases("dense", PASSES, (4096, 16384), bf16, (128,), both, tokens=tokens, heads=heads)
        + _cases("dense", PASSES, (4096,), [torch.float16], (64,), both, tokens=tokens, heads=heads)
        + _cases("varlen", PASSES, (2048, 16384), bf16, (64,), both, tokens=tokens, heads=heads)
    )


def peers_set() -> list[BenchCase]:
    """The peer table of issue 16 (one run, every peer beside triton-flash): bf16, head dim 64, 16 heads, S = 1k, 4k,
    16k, full and causal, forward and forward+backward; dense batches of 16k tokens, and packed (varlen) batches of
    as many sequences (16k / S), their lengths spread evenly from S/2 to S (16 sequences of 512-1024 tokens,
    4 of 2048-4096, one of 16384), for the implementations that take packed batches (flash-attn 2/4 varlen,
    torch-varlen, flex-compiled with a document mask, triton-flash natively)."""
    shape = dict(tokens=16384, heads={64: 16})
    return [case for layout in LAYOUTS for case in _cases(
        layout, ("fwd", "fwd_bwd"), (1024, 4096, 16384), [torch.bfloat16], (64,), (False, True), **shape)]


BENCH_SETS: dict[str, Callable[[], list[BenchCase]]] = {"cpu": cpu_set, "gpu": gpu_set, "peers": peers_set}


def ordered(cases: list[BenchCase]) -> list[BenchCase]:
    """Cheapest first, so that a time budget cuts the most expensive cases of an implementation, not the rest."""
    return sorted(cases, key=lambda c: (case_flops(c), c.layout, c.id))


# Per set: rounds and time per benchmark (pytest-benchmark's --benchmark-max-time / --benchmark-min-rounds, unless
# given), and the seconds one implementation may spend before its remaining cases are skipped (--bench-impl-budget):
# the Triton interpreter can cost minutes per case on a CPU. On a GPU, --bench-budget shares its time among the
# implementations instead (see attnconf/benchmarks/plugin.py). Ten rounds at least: one slow round then moves the mean
# by a tenth of its excess, not a fifth.
SET_DEFAULTS: dict[str, dict] = {
    "cpu": {"benchmark_max_time": "0.2", "benchmark_min_rounds": 3, "impl_budget": 60.0},
    "gpu": {"benchmark_max_time": "0.1", "benchmark_min_rounds": 10, "impl_budget": None},
    "peers": {"benchmark_max_time": "0.1", "benchmark_min_rounds": 10, "impl_budget": None},
}


def set_rounds(name: str) -> dict:
    """A set's rounds per benchmark as ``time_rounds`` takes them: ``max_time`` and ``min_rounds``."""
    defaults = SET_DEFAULTS[name]
    return {"max_time": float(defaults["benchmark_max_time"]), "min_rounds": defaults["benchmark_min_rounds"]}


# Implementations that materialise the [S, S] score matrix (memory_efficient not declared) stop at this length in
# each set: at 16k tokens and 32 heads one bf16 copy of it is 8 GiB at S = 8192, and such a run costs minutes
# while showing nothing the shorter lengths do not (the memory plot's S^2 slope is plain from 1k to 4k).
MATERIALISED_MAX_SEQLEN: dict[str, int | None] = {"cpu": None, "gpu": 4096, "peers": 4096}


def causal_alignment(caps: Capabilities, case: BenchCase) -> str | None:
    """The alignment to ask for (with Sq = Sk any declared one is the same mask); None for a full mask."""
    if not case.causal:
        return None
    declared = caps.causal
    return TOP_LEFT if TOP_LEFT in declared else BOTTOM_RIGHT if BOTTOM_RIGHT in declared else None


def skip_reason(impl: Implementation, case: BenchCase, device: torch.device,
                materialised_max_seqlen: int | None = None) -> str | None:
    """Why ``case`` is outside what ``impl`` declares on ``device`` (or beyond the set's length limit for
    implementations that materialise the score matrix), or None when it may run."""
    reason = impl.capabilities.missing(device=device, **case.needs())
    caps = impl.capabilities.on(device) if reason is None else None
    if reason is None and case.causal and causal_alignment(caps, case) is None:
        reason = "causal attention not declared (capability: causal)"
    if (reason is None and not caps.memory_efficient and materialised_max_seqlen is not None
            and case.seqlen > materialised_max_seqlen):
        reason = (f"memory_efficient not declared: this set runs implementations that materialise the score "
                  f"matrix up to S={materialised_max_seqlen} (--bench-materialised-max-seqlen)")
    return reason


# ---- FLOPs ------------------------------------------------------------------------------------------------------


def visible_pairs(seqlen_q: int, seqlen_k: int, causal: str | None) -> int:
    """How many (query, key) pairs the mask lets through, counted exactly (no S^2/2 approximation)."""
    if causal is None:
        return seqlen_q * seqlen_k
    offset = 0 if causal == TOP_LEFT else seqlen_k - seqlen_q  # row i sees keys j <= i + offset
    total = 0
    # rows whose visible count is clamped to 0 or to Sk contribute nothing or Sk; the rest form an arithmetic run
    first = max(0, -offset)  # first row seeing at least one key
    full_from = max(first, seqlen_k - 1 - offset)  # first row seeing every key
    full_from = min(full_from, seqlen_q)
    if full_from > first:
        a, b = first + offset + 1, full_from - 1 + offset + 1  # visible counts of the first and last partial rows
        total += (a + b) * (full_from - first) // 2
    total += max(0, seqlen_q - full_from) * seqlen_k
    return total


def forward_flops(lengths_q: list[int], lengths_k: list[int], heads: int, head_dim: int, causal: str | None) -> int:
    """2 matmuls (QK^T and PV) of 2 flops per multiply-add: 4 * D per visible pair, per head, per sequence."""
    pairs = sum(visible_pairs(sq, sk, causal) for sq, sk in zip(lengths_q, lengths_k))
    return 4 * head_dim * heads * pairs


def case_flops(case: BenchCase) -> float:
    """FLOPs of one call of the case's pass (causal- and varlen-aware)."""
    lengths = case.lengths()
    fwd = forward_flops(lengths, lengths, case.heads, case.head_dim, TOP_LEFT if case.causal else None)
    return fwd * {"fwd": 1.0, "bwd": BACKWARD_FLOP_FACTOR, "fwd_bwd": 1.0 + BACKWARD_FLOP_FACTOR}[case.pass_]
