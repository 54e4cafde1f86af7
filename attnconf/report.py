"""Turn saved results into ``reports/report.md`` and one self-contained ``reports/report.html``.

    python -m attnconf.report [--reports DIR] [--baseline NNNN] [--history GLOB] [--threshold 10]

Reads the conformance matrices (``reports/conformance/*.json``) and the pytest-benchmark histories
(``reports/benchmarks/<device>-torch<version>/<machine>/NNNN_<name>.json``) and writes, per device and torch
version: the saved runs, how each run compares with the baseline run, tables of TFLOP/s, time and peak memory,
plots of TFLOP/s and peak memory per sequence against sequence length, and the history of one benchmark across
runs. PNGs go to ``reports/plots/``.

The HTML page is one file that opens from disk with no network: the matrices and benchmark results are embedded as
JSON beside a small script (``attnconf/templates/report.js``) that draws them (a matrix coloured by outcome with
each cell's tests, a selector over every matrix under the reports folder, a side-by-side of two matrices, sortable
benchmark tables and a comparison of any two saved runs of one device), and the plots as base64 PNG.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import importlib.resources
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from markupsafe import Markup

from . import conformance_report, masks
from .benchmarking import is_host_bound
from .spec import contracts

DEFAULT_REPORTS = Path("reports")  # relative to the folder the command runs in
PASS_ORDER = {"fwd": 0, "bwd": 1, "fwd_bwd": 2}
MIB = 1 << 20


# ---- loading ----------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """One benchmark of one run: pytest-benchmark's name, its time statistics (seconds) and our extra_info."""

    fullname: str
    name: str
    stats: dict
    info: dict

    @property
    def impl(self) -> str:
        return self.info.get("impl", "?")

    def group_key(self) -> tuple:
        """Results plotted in one figure: same layout, dtype and head dim."""
        return self.info.get("layout", "?"), self.info.get("dtype", "?"), self.info.get("head_dim", 0)


@dataclass
class Run:
    storage: str  # <device slug>-torch<version>
    number: str  # pytest-benchmark's counter, "0001"
    label: str  # the --benchmark-save name
    datetime: str
    machine: dict
    commit: dict
    context: dict  # what the benchmark plugin (attnconf/benchmarks/plugin.py) adds: set, implementations, arguments, host load
    results: dict[str, Result] = field(default_factory=dict)  # by fullname

    @property
    def title(self) -> str:
        return f"{self.number}_{self.label}"


def load_runs(storage_dir: Path) -> list[Run]:
    """Every saved run of one storage folder, oldest first."""
    runs = []
    for path in sorted(storage_dir.glob("*/[0-9][0-9][0-9][0-9]_*.json")):
        data = json.loads(path.read_text())
        number, _, label = path.stem.partition("_")
        run = Run(storage_dir.name, number, label, data.get("datetime", ""),
                  data.get("machine_info", {}).get("attnconf", {}), data.get("commit_info", {}),
                  data.get("attnconf", {}))
        for bench in data.get("benchmarks", []):
            run.results[bench["fullname"]] = Result(bench["fullname"], bench["name"], bench["stats"],
                                                    bench.get("extra_info", {}))
        runs.append(run)
    runs.sort(key=lambda r: (r.number, r.datetime))
    return runs


def most_complete(runs: list[Run]) -> Run:
    """The run the tables and plots show: the newest of those with the most results (a partial rerun never)."""
    return max(runs, key=lambda r: (len(r.results), r.number))


# ---- comparisons and history ------------------------------------------------------------------------------------


# The statistic runs are compared on, as scripts/gpu_bench.sh's --benchmark-compare-fail=median:10% judges: a slower
# implementation moves every round, a few rounds slowed by the host move the mean but not the median.
COMPARED = "median"


def change(new: Result, old: Result, stat: str = COMPARED) -> float:
    """Relative change of a time statistic: +0.25 means 25 % slower."""
    return new.stats[stat] / old.stats[stat] - 1.0


def regressions(run: Run, baseline: Run, threshold: float, stat: str = COMPARED) -> list[tuple[str, float]]:
    """Benchmarks of ``run`` slower than in ``baseline`` by more than ``threshold`` (as pytest-benchmark's
    ``--benchmark-compare-fail=median:10%`` judges), worst first."""
    found = [
        (name, change(result, baseline.results[name], stat))
        for name, result in run.results.items()
        if name in baseline.results
    ]
    return sorted([(n, c) for n, c in found if c > threshold], key=lambda item: -item[1])


def pick_history_benchmark(runs: list[Run], pattern: str | None = None) -> str | None:
    """The benchmark whose history is plotted: the first name matching ``pattern``; otherwise the one present in
    the most runs, then the one with the most FLOPs (the longest calls time most steadily)."""
    names = sorted({name for run in runs for name in run.results})
    if pattern:
        matching = [n for n in names if fnmatch.fnmatchcase(n, pattern) or pattern in n]
        return matching[0] if matching else None
    if not names:
        return None
    count = {n: sum(n in r.results for r in runs) for n in names}
    flops = {n: max(r.results[n].info.get("flops", 0) for r in runs if n in r.results) for n in names}
    return max(names, key=lambda n: (count[n], flops[n], n))


# ---- formatting -------------------------------------------------------------------------------------------------


def fmt_number(value: float | None, digits: int = 3) -> str:
    """Three significant digits, no exponent for the usual ranges (0.0123, 1.23, 312)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:.{decimals}f}"


def fmt_bytes(value: int | None) -> str:
    return "–" if value is None else f"{fmt_number(value / MIB)} MiB"


def fmt_percent(value: float) -> str:
    return f"{value * 100:+.1f} %"


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def machine_line(machine: dict) -> str:
    parts = [machine.get("device_name", "?"), f"torch {machine.get('torch')}"]
    for key, label in (("cuda", "CUDA"), ("cudnn", "cuDNN"), ("triton", "triton"), ("flash_attn", "flash-attn")):
        if machine.get(key):
            parts.append(f"{label} {machine[key]}")
    return ", ".join(parts)


# ---- plots ------------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def impl_colors(names) -> dict[str, tuple]:
    """One colour per implementation, the same in every figure of the report."""
    plt = _pyplot()
    palette = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: palette(i % palette.N) for i, name in enumerate(sorted(names))}


def fmt_seqlen(value: float, _position=None) -> str:
    return f"{value / 1024:g}k" if value >= 1024 else f"{value:g}"


def _axes_style(ax, seqlens, *, log_y: bool) -> None:
    """Sequence lengths as plain tick labels (512, 1k, 16k); a log y axis labelled with plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(seqlens))
    ax.xaxis.set_major_formatter(FuncFormatter(fmt_seqlen))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("sequence length")
    if log_y:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: fmt_number(y, 2)))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.3)


def _series(results: list[Result], value) -> dict[str, list[tuple[int, float]]]:
    by_impl: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in results:
        y = value(r)
        if y is not None and y > 0:
            by_impl[r.impl].append((r.info["seqlen"], y))
    return {impl: sorted(points) for impl, points in by_impl.items()}


def growth_exponent(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(y) against log(S): 1 for linear growth, 2 for quadratic."""
    if len(points) < 2:
        return None
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else None


def plot_tflops(results: list[Result], colors: dict, title: str, path: Path) -> Path:
    """Grid: rows are passes, columns full / causal; TFLOP/s against sequence length, one line per implementation."""
    plt = _pyplot()
    passes = sorted({r.info["pass"] for r in results}, key=PASS_ORDER.get)
    masks = sorted({bool(r.info["causal"]) for r in results})
    fig, axes = plt.subplots(len(passes), len(masks), figsize=(max(7.0, 5.2 * len(masks)), 3.2 * len(passes) + 1.0),
                             squeeze=False)
    for i, pass_ in enumerate(passes):
        for j, causal in enumerate(masks):
            ax = axes[i][j]
            cell = [r for r in results if r.info["pass"] == pass_ and bool(r.info["causal"]) == causal]
            for impl, points in sorted(_series(cell, lambda r: r.info.get("tflops")).items()):
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=impl, color=colors[impl])
            _axes_style(ax, {r.info["seqlen"] for r in results}, log_y=False)
            ax.set_title(f"{pass_}, {'causal' if causal else 'full'} mask", fontsize=10)
            ax.set_ylabel("TFLOP/s (median)")
            ax.set_ylim(bottom=0)
    _legend(fig, axes)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def plot_memory(results: list[Result], colors: dict, title: str, path: Path) -> Path:
    """Columns are passes; peak memory of one call divided by the batch size, against sequence length (log-log).

    Dividing by the batch makes runs with a fixed token count (batch x seqlen) comparable: a linear-memory kernel
    rises with slope 1, one that materialises the score matrix with slope 2 (the legend gives the fitted slope).
    """
    plt = _pyplot()
    passes = sorted({r.info["pass"] for r in results}, key=PASS_ORDER.get)
    impls = {r.impl for r in results}
    legend_rows = math.ceil(len(impls) / 2)
    fig, axes = plt.subplots(1, len(passes), figsize=(5.2 * len(passes), 3.6 + 0.22 * legend_rows), squeeze=False)
    full = [r for r in results if not r.info.get("causal")] or results
    for j, pass_ in enumerate(passes):
        ax = axes[0][j]
        cell = [r for r in full if r.info["pass"] == pass_]
        series = _series(cell, lambda r: _per_sequence(r))
        for impl, points in sorted(series.items()):
            slope = growth_exponent(points)
            label = impl + (f" (∝ S^{slope:.1f})" if slope is not None else "")
            ax.plot([p[0] for p in points], [p[1] / MIB for p in points], marker="o", label=label,
                    color=colors[impl])
        _axes_style(ax, {r.info["seqlen"] for r in results}, log_y=True)
        ax.set_title(f"{pass_}, full mask", fontsize=10)
        ax.set_ylabel("peak memory per sequence (MiB)")
        # below the axes: the slopes differ per pass, and inside the axes the legend would hide curves
        ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def _per_sequence(r: Result) -> float | None:
    peak = r.info.get("peak_memory_bytes")
    return None if peak is None else peak / max(1, r.info.get("batch", 1))


def plot_history(runs: list[Run], name: str, baseline: Run, threshold: float, path: Path) -> Path:
    """Median time (with min-max whiskers) of one benchmark in every run; runs beyond the threshold in red."""
    plt = _pyplot()
    present = [r for r in runs if name in r.results]
    base = baseline.results.get(name) or present[0].results[name]
    xs = list(range(len(present)))
    times = [r.results[name].stats[COMPARED] * 1e3 for r in present]
    lows = [m - r.results[name].stats["min"] * 1e3 for m, r in zip(times, present)]
    highs = [r.results[name].stats["max"] * 1e3 - m for m, r in zip(times, present)]
    changes = [change(r.results[name], base) for r in present]
    colors = ["tab:red" if c > threshold else "tab:blue" for c in changes]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(present) + 3), 4.0))
    base_ms = base.stats[COMPARED] * 1e3
    ax.axhspan(base_ms * (1 - threshold), base_ms * (1 + threshold), color="tab:green", alpha=0.12,
               label=f"baseline {COMPARED} ± {threshold:.0%}")
    ax.axhline(base_ms, color="tab:green", lw=1)
    ax.errorbar(xs, times, yerr=[lows, highs], fmt="none", ecolor="gray", capsize=4, lw=1)
    ax.scatter(xs, times, c=colors, zorder=3, s=40)
    for x, m, c in zip(xs, times, changes):
        ax.annotate(fmt_percent(c), (x, m), textcoords="offset points", xytext=(8, 4), fontsize=8)
    ax.set_xticks(xs, [f"{r.title}\n{r.datetime[:10]}" for r in present], fontsize=8)
    ax.set_xlim(-0.5, len(present) - 0.2)  # room for the last annotation
    ax.set_ylabel(f"{COMPARED} time per call (ms)")
    ax.set_ylim(0, max(m + h for m, h in zip(times, highs)) * 1.15)  # headroom for the labels
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    short = present[-1].results[name].name
    ax.set_title(f"history of {short}\n(red: {COMPARED} slower than the baseline's by more than {threshold:.0%})",
                 fontsize=9)
    return _save(fig, path)


def _legend(fig, axes) -> None:
    """One legend for the grid, below it, so it never covers a curve or the title."""
    handles, labels = {}, []
    for row in axes:
        for ax in row:
            for h, label in zip(*ax.get_legend_handles_labels()):
                if label not in handles:
                    handles[label] = h
                    labels.append(label)
    if not labels:
        return
    columns = min(len(labels), 5)
    rows = math.ceil(len(labels) / columns)
    fig.legend([handles[label] for label in labels], labels, loc="lower center", ncol=columns, fontsize=8)
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, (0.3 * rows + 0.15) / height, 1, 1 - 0.55 / height))


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not fig.get_layout_engine():
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- the page ---------------------------------------------------------------------------------------------------


def conformance_section(reports: Path) -> list[str]:
    lines = ["## Conformance", ""]
    files = sorted((reports / "conformance").glob("*.json"))
    if not files:
        return lines + ["No conformance matrix saved yet (`python -m pytest` writes one).", ""]
    for path in files:
        data = json.loads(path.read_text())
        matrix = conformance_report.markdown(data["records"], data["meta"])
        lines += [re.sub(r"^(#+)", r"##\1", line) for line in matrix.splitlines()]  # nest under this section
        lines.append("")
    return lines


def mask_patterns() -> list[dict]:
    """Each masking contract's pattern as text (rows are queries, ``#`` a visible key), from ``attnconf/masks.py``."""
    return [{"contract": cid, "caption": caption, "picture": masks.picture(mask)}
            for cid, caption, mask in masks.contract_patterns()]


def mask_section() -> list[str]:
    lines = ["## Mask patterns", "", "Which keys (columns) each query (row) sees, drawn from the predicates of "
             "`attnconf/masks.py` that the reference uses (`#` visible, `.` hidden).", ""]
    for pattern in mask_patterns():
        lines += [f"**{pattern['contract']}**: {pattern['caption']}", "", "```", pattern["picture"], "```", ""]
    return lines


def _figure(replot: bool, draw, *args) -> Path:
    """``draw(*args)`` writes the PNG at its last argument, the path; without ``replot`` an existing file is kept."""
    path = args[-1]
    return path if not replot and path.is_file() else draw(*args)


def benchmark_section(storage: Path, reports: Path, *, baseline_number: str | None, history: str | None,
                      threshold: float, colors: dict, figures: list | None = None, replot: bool = True) -> list[str]:
    """The Markdown of one storage; ``figures`` (when given) receives ``(caption, path)`` of each plot drawn."""
    figures = [] if figures is None else figures
    runs = load_runs(storage)
    if not runs:
        return []
    shown = most_complete(runs)
    baseline = next((r for r in runs if r.number == baseline_number), runs[0])
    plots = reports / "plots"
    lines = [f"### {machine_line(shown.machine)}", "", f"Storage `{storage.relative_to(reports)}`.", ""]

    lines += ["#### Saved runs", ""]
    rows = []
    for run in runs:
        found = regressions(run, baseline, threshold) if run is not baseline else []
        common = sum(name in baseline.results for name in run.results)
        verdict = ("baseline" if run is baseline else
                   f"{len(found)} of {common} slower by > {threshold:.0%}" + (f" (worst {fmt_percent(found[0][1])})"
                                                                           if found else ""))
        impls = sorted({r.impl for r in run.results.values()})
        load = run.context.get("host_load_1min")
        rows.append([run.title, run.datetime[:19].replace("T", " "), str(run.commit.get("id", ""))[:10],
                     "–" if load is None else f"{load:.1f}", str(len(run.results)), ", ".join(impls), verdict])
    lines += md_table(["run", "date (UTC)", "commit", "host load", "results", "implementations",
                       f"{COMPARED} vs {baseline.title}"], rows)
    lines += ["", f"Tables and plots below show run `{shown.title}`: TFLOP/s from the median time (FLOPs counted "
              "exactly for causal masks and packed batches; backward = 2.5 x forward), peak memory of one call "
              f"measured with {shown_method(shown)}.", ""]

    groups: dict[tuple, list[Result]] = defaultdict(list)
    for result in shown.results.values():
        groups[result.group_key()].append(result)
    for key in sorted(groups, key=lambda k: (k[0] != "dense", k[2], k[1])):
        layout, dtype, head_dim = key
        results = groups[key]
        heading = f"{layout}, {dtype}, head dim {head_dim}"
        stem = f"{storage.name}-{layout}-{dtype}-d{head_dim}"
        title = f"{machine_line(shown.machine)}\n{heading}"
        lines += [f"#### {heading}", ""]
        if len({r.info['seqlen'] for r in results}) > 1:
            tflops_png = _figure(replot, plot_tflops, results, colors, title, plots / f"{stem}-tflops.png")
            memory_png = _figure(replot, plot_memory, results, colors, title, plots / f"{stem}-memory.png")
            figures += [(f"TFLOP/s, {heading}", tflops_png), (f"peak memory per sequence, {heading}", memory_png)]
            lines += [f"![TFLOP/s, {heading}]({tflops_png.relative_to(reports)})", "",
                      f"![peak memory, {heading}]({memory_png.relative_to(reports)})", ""]
        lines += results_table(results) + [""]

    name = pick_history_benchmark(runs, history)
    if name and sum(name in r.results for r in runs) >= 1:
        png = _figure(replot, plot_history, runs, name, baseline, threshold, plots / f"{storage.name}-history.png")
        figures.append((f"history of {name.split('::')[-1]}", png))
        lines += ["#### History", "", f"`{name}` across the saved runs, against `{baseline.title}`.", "",
                  f"![history]({png.relative_to(reports)})", ""]
        rows = []
        for run in runs:
            if name in run.results:
                r = run.results[name]
                base = baseline.results.get(name)
                rows.append([run.title, f"{fmt_number(r.stats['mean'] * 1e3)} ms",
                             f"{fmt_number(r.stats['median'] * 1e3)} ms", str(r.stats.get("rounds", "")),
                             fmt_percent(change(r, base)) if base else "–"])
        lines += md_table(["run", "mean", "median", "rounds", f"{COMPARED} vs baseline"], rows) + [""]
    return lines


def shown_method(run: Run) -> str:
    methods = {r.info.get("memory_method") for r in run.results.values()} - {None}
    return " / ".join(f"`{m}`" for m in sorted(methods)) or "–"


def results_table(results: list[Result]) -> list[str]:
    """Rows: pass, mask, shape; columns: implementations; cells: TFLOP/s · median time · peak memory."""
    impls = sorted({r.impl for r in results})
    rows: dict[tuple, dict[str, Result]] = defaultdict(dict)
    for r in results:
        i = r.info
        rows[(PASS_ORDER.get(i["pass"], 9), i["pass"], bool(i["causal"]), i["seqlen"], i["batch"], i["heads"])][
            r.impl] = r
    table = []
    for key in sorted(rows):
        _, pass_, causal, seqlen, batch, heads = key
        cells = []
        for impl in impls:
            r = rows[key].get(impl)
            host_bound = r is not None and is_host_bound(r.info.get("host_seconds"), r.info.get("device", "cpu"))
            host = " ‡" if host_bound else ""
            cells.append("–" if r is None else f"{fmt_number(r.info.get('tflops'))} · "
                         f"{fmt_number(r.stats['median'] * 1e3)} ms · {fmt_bytes(r.info.get('peak_memory_bytes'))}"
                         + host)
        table.append([pass_, "causal" if causal else "full", f"B={batch} H={heads} S={seqlen}", *cells])
    return (["TFLOP/s · median time · peak memory of one call; – : not run (outside the manifest, unavailable, "
             "or out of memory); ‡ host-bound: the host takes longer to queue the call than the device clock's head "
             "start covers, so the time follows the host CPU's speed (left out of regression rechecks).", ""]
            + md_table(["pass", "mask", "shape", *impls], table))


def storages_of(reports: Path) -> list[Path]:
    return sorted(p for p in (reports / "benchmarks").glob("*") if p.is_dir())


def build_markdown(reports: Path, *, baseline: str | None = None, history: str | None = None,
                   threshold: float = 0.10, figures: dict | None = None, replot: bool = True) -> str:
    """The report as Markdown (plots drawn on the way); ``figures`` (when given) receives, per storage name, the
    ``(caption, path)`` of its plots."""
    storages = storages_of(reports)
    figures = {} if figures is None else figures
    impls = {r.impl for s in storages for run in load_runs(s) for r in run.results.values()}
    colors = impl_colors(impls)
    lines = ["# attnconf report", "",
             "Generated by `python -m attnconf.report` from the saved results under `reports/`; never edited by "
             "hand.", ""]
    lines += conformance_section(reports)
    lines += mask_section()
    lines += ["## Benchmarks", ""]
    sections = [benchmark_section(s, reports, baseline_number=baseline, history=history, threshold=threshold,
                                  colors=colors, figures=figures.setdefault(s.name, []), replot=replot)
                for s in storages]
    if not any(sections):
        lines += ["No benchmark run saved yet (see the README's benchmark commands).", ""]
    for section in sections:
        lines += section
    return "\n".join(lines).rstrip() + "\n"


# ---- the page: data for its script, one self-contained HTML file ------------------------------------------------


class Strings:
    """A table of the strings the page repeats (node ids, reasons, benchmark names): each is stored once."""

    def __init__(self) -> None:
        self.table: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        if text not in self._index:
            self._index[text] = len(self.table)
            self.table.append(text)
        return self._index[text]


def find_matrices(reports: Path) -> list[tuple[Path, dict]]:
    """Every conformance matrix under ``reports`` (a JSON file holding ``meta`` and ``records``), as (path relative
    to ``reports``, contents): the main ones (``conformance/*.json``) first, then the rest by path. Benchmark
    histories and other JSON files are not matrices and are left out."""
    found = []
    for path in sorted(reports.rglob("*.json")):
        rel = path.relative_to(reports)
        if rel.parts[0] == "benchmarks":
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("meta"), dict) and isinstance(data.get("records"), list):
            found.append((rel, data))
    return sorted(found, key=lambda item: (not is_main_matrix(item[0]), item[0].as_posix()))


def is_main_matrix(rel: Path) -> bool:
    return len(rel.parts) == 2 and rel.parts[0] == "conformance"


def matrix_data(rel: Path, data: dict, strings: Strings) -> dict:
    """One matrix for the page: its cells aggregated as the Markdown matrix aggregates them (outcome, cell text,
    largest err/bound and its tensor, failure classes, counts) and, per cell, its tests' records (node id, outcome,
    reason, failure class, err/bound per tensor). Implementations that ran nowhere here are listed with the reason."""
    meta, records = data["meta"], data["records"]
    cells = conformance_report.aggregate(records)
    everything = sorted({r["impl"] for r in records})
    not_run = {i: reason for i in everything if (reason := conformance_report.unavailable(cells, i))}
    impls = [i for i in everything if i not in not_run]
    spec = contracts()
    present = {cid for (impl, cid) in cells if impl in impls}
    ids = [c for c in spec if c in present] + sorted(present - set(spec))
    kept, tests = [], defaultdict(list)
    for rec in records:
        if rec["impl"] in impls:
            tests[(rec["impl"], rec["contract"])].append(len(kept))
            kept.append([strings(rec["nodeid"]), rec["outcome"], strings(rec.get("reason") or ""),
                         rec.get("failure"), rec.get("ratios") or {}])
    cell_out = {}
    for (impl, cid), cell in cells.items():
        if impl in impls:
            cell_out[f"{impl} {cid}"] = {
                "o": cell["outcome"], "t": conformance_report.cell_text(cell), "r": cell["max_ratio"],
                "w": cell["worst_tensor"], "f": sorted(set(cell["failures"]) - {"FAIL"}),
                "n": dict(cell["counts"]), "k": tests[(impl, cid)]}
    return {
        "path": rel.as_posix(), "main": is_main_matrix(rel), "device": meta.get("device") or "?",
        "device_name": meta.get("device_name") or meta.get("device") or "?", "torch": str(meta.get("torch") or "?"),
        "triton": meta.get("triton"), "cuda": meta.get("cuda"), "flash_attn": meta.get("flash_attn"),
        "date": meta.get("date"), "seed": meta.get("seed", 0), "impls": impls, "not_run": not_run,
        "contracts": ids, "cells": cell_out, "records": kept,
        # a PASS above 1 can only come from a matrix written before the ratio became err/bound (2026-12-01, when
        # error / (reference error + floor) passed at <= 2 or 3): the page says so rather than show it as a pass
        # that broke the rule
        "older_ratio": any(c["o"] == "passed" and isinstance(c["r"], (int, float)) and c["r"] > 1
                           for c in cell_out.values()),
    }


def storage_data(storage: Path, strings: Strings, *, baseline_number: str | None, threshold: float) -> dict | None:
    """One benchmark storage for the page: every saved run with every result (median, mean, min, max, rounds,
    TFLOP/s, peak memory), the case of each benchmark, which run the tables show and which is the baseline."""
    runs = load_runs(storage)
    if not runs:
        return None
    shown = most_complete(runs)
    baseline = next((r for r in runs if r.number == baseline_number), runs[0])
    cases: dict[str, dict] = {}
    out_runs = []
    for run in runs:
        results = {}
        for name, r in run.results.items():
            i = r.info
            cases.setdefault(name, {
                "impl": r.impl, "layout": i.get("layout"), "pass": i.get("pass"), "causal": bool(i.get("causal")),
                "dtype": i.get("dtype"), "head_dim": i.get("head_dim"), "batch": i.get("batch"),
                "heads": i.get("heads"), "seqlen": i.get("seqlen"), "name": r.name})
            results[str(strings(name))] = {
                "median": r.stats.get("median"), "mean": r.stats.get("mean"), "min": r.stats.get("min"),
                "max": r.stats.get("max"), "rounds": r.stats.get("rounds"), "tflops": i.get("tflops"),
                "peak": i.get("peak_memory_bytes"),
                "host_bound": bool(is_host_bound(i.get("host_seconds"), i.get("device", "cpu")))}
        out_runs.append({"title": run.title, "number": run.number, "label": run.label, "datetime": run.datetime,
                         "commit": str(run.commit.get("id", ""))[:10], "load": run.context.get("host_load_1min"),
                         "results": results})
    return {"storage": storage.name, "machine": machine_line(shown.machine), "shown": runs.index(shown),
            "baseline": runs.index(baseline), "threshold": threshold, "stat": COMPARED,
            "cases": {str(strings(name)): case for name, case in cases.items()}, "runs": out_runs}


def page_data(reports: Path, *, baseline: str | None = None, threshold: float = 0.10) -> dict:
    """Everything the page's script draws, as one JSON-able object."""
    strings = Strings()
    matrices = [matrix_data(rel, data, strings) for rel, data in find_matrices(reports)]
    storages = [d for s in storages_of(reports)
                if (d := storage_data(s, strings, baseline_number=baseline, threshold=threshold))]
    spec = contracts()
    return {"contracts": [[cid, title] for cid, title in spec.items()], "matrices": matrices,
            "benchmarks": storages, "threshold": threshold, "strings": strings.table}


def _asset(name: str) -> str:
    return (importlib.resources.files("attnconf") / "templates" / name).read_text(encoding="utf-8")


_TEMPLATES = jinja2.Environment(
    loader=jinja2.FunctionLoader(lambda name: _asset(name)), autoescape=True, undefined=jinja2.StrictUndefined,
    trim_blocks=True, lstrip_blocks=True)


def embed_json(data) -> Markup:
    """JSON that is safe inside ``<script type="application/json">``: every ``<`` escaped (it only occurs in strings,
    where ``\\u003c`` means the same), so no reason or test id can close the element."""
    return Markup(json.dumps(_finite(data), separators=(",", ":"), allow_nan=False).replace("<", "\\u003c"))


def _finite(value):
    """JSON has no inf or NaN (a NONFINITE failure can record an infinite err/bound): they become the strings
    "inf", "-inf", "nan", which the page prints as they are."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def render_html(data: dict, figures: dict[str, list[tuple[str, Path]]]) -> str:
    """The page: the template with the data, the script and the style inlined, and the plots as data URIs."""
    storages = [{"storage": s["storage"], "machine": s["machine"],
                 "figures": [{"caption": c, "src": png_data_uri(p)} for c, p in figures.get(s["storage"], [])]}
                for s in data["benchmarks"]]
    return _TEMPLATES.get_template("report.html.j2").render(
        data=embed_json(data), script=Markup(_asset("report.js")), style=Markup(_asset("report.css")),
        matrices=data["matrices"], storages=storages, mask_patterns=mask_patterns())


def write(reports: Path, *, replot: bool = True, **options) -> tuple[Path, Path]:
    """``report.md`` and ``report.html`` in ``reports``, plots in ``reports/plots`` (drawn again unless ``replot``
    is false and they exist)."""
    figures: dict[str, list] = {}
    text = build_markdown(reports, figures=figures, replot=replot, **options)
    data = page_data(reports, baseline=options.get("baseline"), threshold=options.get("threshold", 0.10))
    md_path, html_path = reports / "report.md", reports / "report.html"
    md_path.write_text(text)
    html_path.write_text(render_html(data, figures), encoding="utf-8")
    return md_path, html_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnconf.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=Path, default=DEFAULT_REPORTS,
                        help="the reports folder (default: %(default)s)")
    parser.add_argument("--baseline", help="run number the others are compared with (default: each storage's first)")
    parser.add_argument("--history", metavar="GLOB", help="benchmark whose history is plotted (default: the one in "
                        "the most runs, then the largest)")
    parser.add_argument("--threshold", type=float, default=10.0, help="regression threshold in percent (default 10)")
    parser.add_argument("--keep-plots", action="store_true",
                        help="reuse the PNGs already in reports/plots instead of drawing them again")
    args = parser.parse_args(argv)
    md_path, html_path = write(args.reports, baseline=args.baseline, history=args.history,
                               threshold=args.threshold / 100, replot=not args.keep_plots)
    print(f"wrote {md_path} and {html_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
