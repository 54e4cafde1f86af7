"""attnconf across torch versions: what the installed torch offers, timed runs, and the tables across versions.

Feature gates (used by the implementations' ``available()`` and capabilities): ``torch_version()`` and
``at_least(2, 6)`` read the installed torch's release, never a local suffix (``2.9.1+cu128`` is 2.9.1);
``inductor_cpp_reason()`` says why inductor cannot build C++ kernels here (no compiler, or no setuptools for
``torch.utils.cpp_extension``).

Two commands, both used by ``tox.ini``:

    python -m attnconf.compat run --reports DIR --kind conformance|bench -- PYTEST_ARGS...
        runs ``python -m pytest PYTEST_ARGS`` and writes DIR/runs/<kind>-torch<version>.json: torch, triton,
        numpy and Python versions, the tox environment, start time, duration and pytest's exit status.
    python -m attnconf.compat table DIR [--output DIR]
        from DIR/conformance/*.json (the matrices), DIR/runs/*.json and DIR/benchmarks/<device>-torch<v>/ (the
        benchmark histories), writes compat.md (torch version x implementation: contracts passed / failed /
        skipped, the run's duration, and every contract whose verdict differs between versions, with its reasons)
        and benchmarks.md (each benchmark case's time per torch version, against the previous version).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

# ---- what the installed torch offers ------------------------------------------------------------------------------


def parse_version(text: str) -> tuple[int, ...]:
    """(major, minor, patch) of a version string; a local suffix or pre-release tag is ignored."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(part or 0) for part in match.groups())


def torch_version() -> tuple[int, ...]:
    import torch

    return parse_version(torch.__version__)


def at_least(major: int, minor: int, patch: int = 0) -> bool:
    return torch_version() >= (major, minor, patch)


def torch_label() -> str:
    import torch

    return f"torch {torch.__version__}"


def inductor_cpp_reason() -> str | None:
    """Why torch.compile cannot build C++ kernels on the CPU here, naming the torch version; None if it can.

    Inductor builds its CPU kernels with a C++ compiler, through ``torch.utils.cpp_extension``, which imports
    setuptools at the top (torch 2.6 to 2.14): without setuptools every compiled call fails with
    ``ModuleNotFoundError`` (torch 2.9 in a uv environment, which has none of its own; torch 2.11 and newer declare
    setuptools a dependency, older releases do not).
    """
    if shutil.which("g++") is None and shutil.which("c++") is None:
        return "torch.compile needs a C++ compiler (g++) for its generated code: apt-get install g++"
    try:
        import torch.utils.cpp_extension  # noqa: F401
    except ImportError as exc:
        return (f"{torch_label()}'s inductor builds its C++ kernels through torch.utils.cpp_extension, which "
                f"cannot be imported here ({type(exc).__name__}: {exc}); pip install setuptools")
    return None


# ---- a timed run ------------------------------------------------------------------------------------------------


def emulated_cpu_capability() -> str | None:
    """The SIMD level ATEN_CPU_CAPABILITY forces when it is below what this CPU has ("AVX2 on an AVX512 CPU"),
    else None. torch's CPU kernels honour the setting; inductor's generated code does not consistently (wrong
    results and segfaults from compiled flex, pack_vnni2 errors from the CPU flash kernel's bf16 backward)."""
    if not os.environ.get("ATEN_CPU_CAPABILITY"):
        return None
    import torch

    native = ("AVX512" if torch.cpu._is_avx512_supported() else "AVX2" if torch.cpu._is_avx2_supported()
              else "DEFAULT")
    effective = torch.backends.cpu.get_cpu_capability()
    return None if effective == native else f"{effective} on an {native} CPU"


def installed_versions() -> dict:
    versions = {"python": platform.python_version()}
    for module in ("torch", "triton", "numpy"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 (a broken install is recorded as absent)
            versions[module] = None
    return versions


PARTIAL_OPTIONS = ("-k", "-m", "--impl", "--deselect", "--lf", "--last-failed", "-x", "--exitfirst")


def is_partial(pytest_args: list[str]) -> bool:
    """Whether these pytest arguments run only part of the suite (as the plugin's partial runs, which merge)."""
    return any(arg.split("=", 1)[0] in PARTIAL_OPTIONS or "::" in arg for arg in pytest_args)


def checkout_commit() -> str | None:
    """The short commit of the working directory's git checkout (``+dirty`` with uncommitted changes), or None."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def run(reports: Path, kind: str, pytest_args: list[str]) -> int:
    versions = installed_versions()
    versions["commit"] = checkout_commit()
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.monotonic()
    status = subprocess.call([sys.executable, "-m", "pytest", *pytest_args])
    record = {
        "kind": kind,
        "env": os.environ.get("TOX_ENV_NAME"),
        **versions,
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - clock, 1),
        "exit_status": status,
        "pytest_args": pytest_args,
    }
    out = Path(reports) / "runs" / f"{kind}-torch{str(versions['torch']).split('+')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if is_partial(pytest_args):
        # a rerun of some tests merges into the matrix (the plugin's partial runs); here it joins the full run's
        # record instead of replacing its duration
        if out.exists():
            full = json.loads(out.read_text())
            full.setdefault("reruns", []).append(
                {key: record[key] for key in ("started", "duration_s", "exit_status", "pytest_args", "commit")})
            record = full
        else:
            record["partial"] = True
    out.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    took = round(time.monotonic() - clock, 1)
    print(f"attnconf.compat: {kind} run of torch {versions['torch']}: {took} s, exit status {status}; recorded in "
          f"{out}" + (" (a partial run: joined to the record of the whole run)" if record.get("reruns") else ""))
    return status


# ---- the conformance table --------------------------------------------------------------------------------------


def release(version: str) -> str:
    return str(version).split("+")[0]


def load_runs(directory: Path, kind: str) -> dict[str, dict]:
    """torch release -> the run record of that kind."""
    runs = {}
    for path in sorted((directory / "runs").glob(f"{kind}-torch*.json")):
        record = json.loads(path.read_text())
        runs[release(record["torch"])] = record
    return runs


def load_matrices(directory: Path) -> dict[str, dict]:
    """torch release -> the matrix JSON (one device: the first device name found, CPU first)."""
    matrices = {}
    for path in sorted((directory / "conformance").glob("*.json")):
        data = json.loads(path.read_text())
        matrices.setdefault(data["meta"].get("device_name"), {})[release(data["meta"]["torch"])] = data
    if not matrices:
        return {}
    device = "cpu" if "cpu" in matrices else sorted(matrices)[0]
    return matrices[device]


def by_version(versions) -> list[str]:
    return sorted(versions, key=parse_version)


def contract_counts(records: list[dict]) -> dict[str, dict]:
    """impl -> {passed, failed, xfailed, skipped: contracts; tests: {outcome: n}; unavailable: reason or None}."""
    from .conformance_report import aggregate, unavailable

    cells = aggregate(records)
    counts: dict[str, dict] = defaultdict(lambda: {"passed": 0, "failed": 0, "xfailed": 0, "skipped": 0,
                                                   "tests": defaultdict(int)})
    for (impl, _), cell in cells.items():
        counts[impl][cell["outcome"]] += 1
    for record in records:
        counts[record["impl"]]["tests"][record["outcome"]] += 1
    for impl in counts:
        counts[impl]["unavailable"] = unavailable(cells, impl)
    return counts


def cell(count: dict | None) -> str:
    if count is None:
        return "–"
    if count["unavailable"]:
        return "not run¹"
    text = f"{count['passed']} / {count['failed']} / {count['skipped']}"
    if count["xfailed"]:
        text += f" (+{count['xfailed']} xfail)"
    return text


def differences(matrices: dict[str, dict], versions: list[str], counts: dict[str, dict]) -> list[str]:
    """Lines: every (implementation, contract) whose verdict is not the same on every version, with why.
    ``counts``: version -> contract_counts of its matrix (which says where an implementation did not run)."""
    from .conformance_report import LABEL, aggregate

    verdicts: dict[tuple[str, str], dict[str, tuple[str, str]]] = defaultdict(dict)
    for version in versions:
        for key, c in aggregate(matrices[version]["records"]).items():
            why = sorted(c["reasons"]) if c["outcome"] == "skipped" else sorted(
                {f"{d[2] or d[0]}: {d[3]}" for d in c["details"] if d[0] in ("failed", "xfailed")})
            ran = sum(n for outcome, n in c["counts"].items() if outcome != "skipped")
            passed = c["counts"].get("passed", 0)
            label = LABEL[c["outcome"]] + (f" ({passed}/{ran})" if c["outcome"] != "skipped" and passed != ran else "")
            verdicts[key][version] = (label, "; ".join(why))
    # an implementation that does not run at all on a version (the table's "not run") gets one line, not one per
    # contract; its other versions' verdicts are then compared among themselves
    not_run = defaultdict(list)
    for version in versions:
        for impl, count in counts[version].items():
            if count["unavailable"]:
                not_run[impl].append(version)
    lines = [f"- `{impl}`: not run on torch {', '.join(where)} (¹ above); compared below where it ran"
             for impl, where in sorted(not_run.items()) if len(where) < len(versions)]
    for (impl, contract), per_version in sorted(verdicts.items()):
        ran_on = [v for v in versions if v not in not_run.get(impl, ())]
        labels = {per_version[v][0] for v in ran_on if v in per_version}
        if len(labels) <= 1:  # the same wherever the contract ran (absent_contracts lists where it did not)
            continue
        parts = []
        for version in ran_on:
            label, why = per_version.get(version, ("absent", ""))
            parts.append(f"{version} {label}" + (f" ({why[:300]})" if why and not label.startswith("PASS") else ""))
        lines.append(f"- `{impl}` {contract}: " + "; ".join(parts))
    return lines


def absent_contracts(matrices: dict[str, dict], versions: list[str]) -> dict[str, list[str]]:
    """contract -> the versions whose run did not have it (the suite changed between the runs' commits)."""
    present = {v: {record["contract"] for record in matrices[v]["records"]} for v in versions}
    every = set().union(*present.values()) if present else set()
    return {c: [v for v in versions if c not in present[v]] for c in sorted(every)
            if any(c not in present[v] for v in versions)}


def compat_markdown(directory: Path) -> str:
    matrices = load_matrices(directory)
    runs = load_runs(directory, "conformance")
    versions = by_version(matrices)
    counts = {v: contract_counts(matrices[v]["records"]) for v in versions}
    impls = sorted({impl for v in versions for impl in counts[v]})
    device = next((m["meta"].get("device_name") for m in matrices.values()), "?")
    lines = [
        f"# attnconf across torch versions: {device}",
        "",
        f"Written by `python -m attnconf.compat table {directory}` from the matrices under `conformance/` and the "
        "run records under `runs/` (each written by one `tox -e torch<version>` run; README \"Across torch "
        "versions\"). A cell is contracts passed / failed / skipped for that implementation (a contract passes when "
        "every test of it that ran passed; xfail: declared expected failures); the per-test matrix of each "
        "version is `conformance/<device>-torch<version>.md`. Run: the whole suite's wall time; `+ N rerun`: tests "
        "rerun later (a partial run, merged into the matrix: `python -m attnconf.compat run` keeps both), with their "
        "exit statuses and commits after the first; commit: the checkout the run tested (`?`: not recorded).",
        "",
        "| torch | triton | numpy | commit | run (min) | pytest exit | tests passed / failed / skipped / xfail | "
        + " | ".join(impls) + " |",
        "|---" * (7 + len(impls)) + "|",
    ]
    for version in versions:
        meta, record = matrices[version]["meta"], runs.get(version, {})
        totals = defaultdict(int)
        for count in counts[version].values():
            for outcome, n in count["tests"].items():
                totals[outcome] += n
        duration = f"{record['duration_s'] / 60:.1f}" if record.get("duration_s") is not None else "?"
        status = str(record.get("exit_status", "?"))
        if record.get("partial"):
            duration, status = f"({duration}, part)", f"({status})"
        commit = record.get("commit") or "?"
        for rerun in record.get("reruns", []):
            duration += f" + {rerun['duration_s'] / 60:.1f} rerun"
            status += f", {rerun['exit_status']}"
            commit += f", {rerun.get('commit') or '?'}"
        lines.append(
            f"| {meta['torch']} | {meta.get('triton') or '–'} | {record.get('numpy', '?')} | {commit} | {duration} | "
            f"{status} | {totals['passed']} / {totals['failed']} / {totals['skipped']} / "
            f"{totals['xfailed']} | " + " | ".join(cell(counts[version].get(impl)) for impl in impls) + " |"
        )
    lines += ["", "¹ not run: every test skipped for one reason, the implementation's own:", ""]
    reasons = defaultdict(list)
    for version in versions:
        for impl in impls:
            count = counts[version].get(impl)
            if count and count["unavailable"]:
                reasons[(impl, count["unavailable"])].append(version)
    for (impl, reason), where in sorted(reasons.items()):
        lines.append(f"- `{impl}` on torch {', '.join(where)}: {reason}")
    lines += ["", "## Failures and declared deviations, per version", ""]
    for version in versions:
        noted = [r for r in matrices[version]["records"] if r["outcome"] in ("failed", "xfailed")]
        lines.append(f"- torch {version}: " + ("none" if not noted else f"{len(noted)}"))
        for record in sorted(noted, key=lambda r: (r["outcome"], r["nodeid"])):
            label = "XFAIL (declared)" if record["outcome"] == "xfailed" else f"FAIL {record.get('failure') or ''}"
            reason = " ".join(str(record.get("reason", "")).split())[:240]
            lines.append(f"  - {label.strip()} `{record['nodeid']}`: {reason}")
    diff = differences(matrices, versions, counts)
    lines += ["", "## Verdicts that differ between torch versions", ""]
    lines += diff or ["None: every implementation has the same verdict on every contract on every version."]
    absent = absent_contracts(matrices, versions)
    if absent:
        lines += ["", "## Contracts some runs did not have", "",
                  "The suite gained them between the runs' commits; where they ran, their verdicts are compared above.",
                  ""]
        lines += [f"- {contract}: not in the runs of torch {', '.join(where)}" for contract, where in absent.items()]
    return "\n".join(lines) + "\n"


# ---- the benchmark table ----------------------------------------------------------------------------------------


def load_benchmarks(directory: Path, device: str = "cpu") -> dict[str, dict[str, list[float]]]:
    """torch release -> {benchmark name: the fastest round's time in s of each saved run, oldest run first}."""
    results = {}
    for history in sorted((directory / "benchmarks").glob(f"{device}-torch*")):
        runs = defaultdict(list)
        for path in sorted(history.rglob("*.json")):
            for bench in json.loads(path.read_text())["benchmarks"]:
                runs[bench["name"]].append(bench["stats"]["min"])
        if runs:
            results[release(history.name.split("-torch", 1)[1])] = dict(runs)
    return results


def spread(times: list[float]) -> float:
    """Slowest over fastest of one case's saved runs on one version (1.0 for a single run)."""
    return max(times) / min(times)


def bench_markdown(directory: Path, threshold: float = 1.25) -> str:
    """Each case per torch version: the best of that version's saved runs, its ratio to the previous version,
    bold where it is slower by more than ``threshold`` and by more than the case's own run-to-run spread (the
    largest on either version): a difference the repeated runs cannot explain."""
    results = load_benchmarks(directory)
    versions = by_version(results)
    names = sorted({name for v in versions for name in results[v]})
    counts = sorted({len(times) for v in versions for times in results[v].values()})
    spreads = sorted(spread(times) for v in versions for times in results[v].values() if len(times) > 1)
    noise = (f"Saved runs per version and case: {', '.join(map(str, counts))}; the slowest over the fastest run of "
             f"one case on one version: median {spreads[len(spreads) // 2]:.2f}x, largest {spreads[-1]:.2f}x."
             if spreads else "One saved run per version: no run-to-run spread to compare with.")
    lines = [
        "# CPU benchmarks across torch versions",
        "",
        f"Written by `python -m attnconf.compat table {directory}` from every saved run in each "
        "`benchmarks/cpu-torch<version>/` history (each written by one `tox -e torch<version>-bench` run). A cell "
        "is the fastest round's time in ms (pytest-benchmark's min, the statistic least moved by other load), the "
        "best of the version's saved runs, then its ratio to the previous version that ran the case. " + noise
        + f" **Bold**: more than {threshold:.2f}x slower than the previous version and more than the case's own "
        "run-to-run spread on either version; spread: the case's largest run-to-run spread over all versions.",
        "",
        "| case | spread | " + " | ".join(versions) + " |",
        "|---" * (2 + len(versions)) + "|",
    ]
    flagged = []
    for name in names:
        row, previous = [], None
        case_spread = max(spread(results[v][name]) for v in versions if name in results[v])
        for version in versions:
            times = results[version].get(name)
            if times is None:
                row.append("–")
                continue
            ms, noise_here = min(times) * 1e3, spread(times)
            text = f"{ms:.3g}"
            if previous is not None:
                ratio = ms / previous[1]
                text += f" ({ratio:.2f}x)"
                if ratio > max(threshold, previous[2], noise_here):
                    text = f"**{text}**"
                    flagged.append(f"- `{name}`: {previous[0]} {previous[1]:.3g} ms -> {version} {ms:.3g} ms "
                                   f"({ratio:.2f}x; run-to-run spread {previous[2]:.2f}x and {noise_here:.2f}x)")
            row.append(text)
            previous = (version, ms, noise_here)
        lines.append(f"| `{name.removeprefix('test_attention[').removesuffix(']')}` | {case_spread:.2f}x | "
                     + " | ".join(row) + " |")
    lines += ["", f"## Slower than the previous version beyond {threshold:.2f}x and the run-to-run spread", ""]
    lines += flagged or ["None."]
    return "\n".join(lines) + "\n"


def table(directory: Path, output: Path | None = None) -> list[Path]:
    output = Path(output or directory)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    if load_matrices(directory):
        path = output / "compat.md"
        path.write_text(compat_markdown(directory))
        written.append(path)
    if load_benchmarks(directory):
        path = output / "benchmarks.md"
        path.write_text(bench_markdown(directory))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnconf.compat", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    running = commands.add_parser("run", help="run pytest and record the run's versions and duration")
    running.add_argument("--reports", type=Path, required=True, help="the attnconf_reports folder of the run")
    running.add_argument("--kind", choices=["conformance", "bench"], required=True)
    running.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: pytest's arguments")
    tabling = commands.add_parser("table", help="write compat.md and benchmarks.md from the runs under DIR")
    tabling.add_argument("directory", type=Path)
    tabling.add_argument("--output", type=Path, default=None, help="where to write them (default: DIR)")
    args = parser.parse_args(argv)
    if args.command == "run":
        pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
        return run(args.reports, args.kind, pytest_args)
    written = table(args.directory, args.output)
    if not written:
        print(f"attnconf.compat: no matrices or benchmark histories under {args.directory}", file=sys.stderr)
        return 1
    for path in written:
        print(f"attnconf.compat: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
