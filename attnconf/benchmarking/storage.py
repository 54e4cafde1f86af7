"""Machine info, where runs are stored, the run summary, and when the suite cannot run."""

from __future__ import annotations

import re
from pathlib import Path

import torch


STORAGE_FOLDER = "benchmarks"  # under the reports folder (the attnconf_reports ini value under the rootdir)

# ---- machine info, storage, when the suite cannot run -----------------------------------------------------------


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # absent, or broken on import: either way not usable here
        return None


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def machine_info(device: torch.device) -> dict:
    """What a benchmark number depends on beyond the code: device and library versions."""
    info = {
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "triton": _version("triton"),
        "flash_attn": _version("flash_attn"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu_memory_bytes=props.total_memory, compute_capability=f"{props.major}.{props.minor}",
                    gpu_count=torch.cuda.device_count())
    else:
        info["cpu_threads"] = torch.get_num_threads()
    return info


def storage_name(device: torch.device) -> str:
    """``<device slug>-torch<version>``: one history per device and torch version (same stem as the matrix)."""
    slug = re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")
    return f"{slug}-torch{torch.__version__.split('+')[0]}"


def storage_dir(device: torch.device, root: Path) -> Path:
    """The benchmark history of ``device`` under ``root`` (the reports folder: ``reports/`` of the user's project)."""
    return Path(root) / STORAGE_FOLDER / storage_name(device)


def summary_lines(results: list[tuple[str, dict]]) -> list[str]:
    """A plain-text table of benchmark results, (label, ``extra_info``) each: case, implementation, TFLOP/s, memory."""
    rows = [(label.replace(f"{i['impl']}-", "", 1), i["impl"], f"{i['tflops']:.3g}",
             f"{i['peak_memory_bytes'] / 2**20:.1f} MiB" if i.get("peak_memory_bytes") is not None else "–")
            for label, i in results]
    rows.sort(key=lambda r: (r[0], -float(r[2])))
    header = ("case", "implementation", "TFLOP/s", "peak memory")
    widths = [max(len(r[n]) for r in [header, *rows]) for n in range(4)]
    fmt = lambda r: "  ".join(c.ljust(w) if n < 2 else c.rjust(w) for n, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [fmt(header), *(fmt(r) for r in rows)]


def suite_disabled_reason(*, xdist_active: bool, disabled: bool) -> str | None:
    """Why the benchmark suite must not run in this session, or None."""
    if xdist_active:
        return ("benchmarks skipped: pytest-xdist is active, and timings taken while other workers share the "
                "machine are not comparable (run the benchmarks without -n)")
    if disabled:
        return ("benchmarks skipped: benchmarking is disabled (--benchmark-disable), and the suite measures "
                "nothing in that mode (drop --benchmark-disable, or add --benchmark-enable)")
    return None
