"""attnconf as a kernel author gets it: the wheel installed (not editable) into a fresh virtual environment, run
from an empty folder on an out-of-tree package (an entry point) and a module named by ``--impl-module``.

The matrix and the benchmark history must land under that folder, nothing may be written into site-packages, only
``attnconf`` may be installed at the top level, and the verdicts must equal those of the same implementations run
inside the clone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    "TOX_ENV_NAME" in os.environ,
    reason="builds a fresh virtual environment with pip and this torch version; run it outside tox",
)

# an out-of-tree package: its own pyproject.toml, registering through the entry-point group
PACKAGE_FILES = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "demo-kernels"
        version = "0.1"

        [project.entry-points."attnconf.implementations"]
        demo-ep = "demo_kernels.kernels:sdpa_heads_first"
    """,
    "demo_kernels/__init__.py": "",
    "demo_kernels/kernels.py": '''
        import torch.nn.functional as F
        from attnconf import Capabilities, implementation

        @implementation("demo-ep", layout="bhsd", capabilities=Capabilities(causal={"top_left"}, gqa=True))
        def sdpa_heads_first(q, k, v, causal=None, scale=None):
            """SDPA in its own [B, H, S, D] layout."""
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal is not None, scale=scale,
                                                  enable_gqa=q.shape[1] != k.shape[1])
    ''',
}

# a module next to the run, named by --impl-module: it declares key-padding masks and ignores them, so it fails
LOCAL_MODULE = '''
    import torch
    from attnconf import Capabilities, implementation

    @implementation("demo-mod", capabilities=Capabilities(key_padding_mask=True))
    def ignores_the_mask(q, k, v, key_padding_mask=None, scale=None):
        scale = q.shape[-1] ** -0.5 if scale is None else scale
        scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) * scale
        return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v.float()).to(q.dtype)
'''

IMPLS = "demo-ep,demo-mod"
SPREAD = ["-n", "2"]  # the conformance runs on two workers (the same verdicts as one: tests/test_robust_runs.py)
SUITE_ARGS = ["-q", "-p", "no:cacheprovider", "--impl-module", "local_kernel:ignores_the_mask", "--impl", IMPLS]
# the dense and mask contracts: enough to see the plugin judge, fail a wrong kernel and match the clone's verdicts
SELECT = ["-k", "test_dense or test_masks"]


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text).lstrip())


def _run(args, cwd, env=None, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _verdicts(matrix: Path) -> dict[tuple[str, str, str], str]:
    records = json.loads(matrix.read_text())["records"]
    return {(r["impl"], r["nodeid"], r["contract"]): r["outcome"] for r in records}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv holding the attnconf wheel and the demo package, its site-packages, a work folder)."""
    base = tmp_path_factory.mktemp("installed")
    wheels, source = base / "wheels", base / "source"
    # from a copy of the sources, so that nothing a build left in the checkout (build/lib) enters the wheel
    shutil.copytree(ROOT, source, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", ".tox", "reports", "__pycache__",
                                                  ".benchmarks", ".hypothesis", ".pytest_cache"))
    proc = _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                 "-w", str(wheels)], cwd=base)
    assert proc.returncode == 0, proc.stderr[-3000:]
    venv = base / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], cwd=base).returncode == 0
    python = venv / "bin" / "python"
    package = base / "demo-kernels"
    _write(package, PACKAGE_FILES)
    torch_version = torch.__version__.split("+")[0]
    proc = _run([str(python), "-m", "pip", "install", "-q", str(next(wheels.glob("attnconf-*.whl"))),
                 f"torch=={torch_version}", "pytest-benchmark>=5.1", str(package)], cwd=base)
    assert proc.returncode == 0, proc.stderr[-3000:]
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     cwd=base).stdout.strip())
    work = base / "work"
    _write(work, {"local_kernel.py": LOCAL_MODULE})
    return python, site, work


def test_installed_plugin_runs_from_an_empty_folder(installed, tmp_path):
    python, site, work = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",) and not k.startswith("PYTEST_XDIST")}
    proc = _run([str(python), "-m", "pytest", "--pyargs", "attnconf.conformance", *SUITE_ARGS, *SELECT, *SPREAD],
                cwd=work, env=env)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # demo-mod fails its mask contracts
    matrix = work / "reports" / "conformance" / f"cpu-torch{torch.__version__.split('+')[0]}.json"
    installed_verdicts = _verdicts(matrix)
    assert {impl for impl, _, _ in installed_verdicts} == set(IMPLS.split(","))
    failed = {(impl, contract) for (impl, _, contract), outcome in installed_verdicts.items() if outcome == "failed"}
    assert any(impl == "demo-mod" and c.startswith("MASK") for impl, c in failed), failed

    # nothing written into site-packages; only attnconf (and the demo package) installed at the top level
    top_level = {p.name for p in site.iterdir()}
    assert not top_level & {"reports", "impls", "conformance", "benchmarks"}, sorted(top_level)
    assert "attnconf" in top_level

    # the CPU benchmark set on the same implementations, its history under the folder too
    proc = _run([str(python), "-m", "pytest", "--pyargs", "attnconf.benchmarks", "--benchmark-only",
                 "--benchmark-autosave", "--bench-set", "cpu", *SUITE_ARGS], cwd=work, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "TFLOP/s" in proc.stdout
    history = list((work / "reports" / "benchmarks").glob("cpu-torch*/*/*.json"))
    assert len(history) == 1, history
    saved = {b["extra_info"]["impl"] for b in json.loads(history[0].read_text())["benchmarks"]}
    assert saved == set(IMPLS.split(","))
    assert not (site / "reports").exists() and not (site / ".benchmarks").exists()

    # the same implementations run inside the clone get the same verdict on every test
    env_clone = dict(env, PYTHONPATH=os.pathsep.join([str(work), str(work.parent / "demo-kernels")]))
    report = tmp_path / "clone-report"
    proc = _run([sys.executable, "-m", "pytest", "conformance", *SUITE_ARGS, *SELECT, *SPREAD,
                 "--impl-module", "demo_kernels.kernels:sdpa_heads_first", "--conformance-report", str(report)],
                cwd=ROOT, env=env_clone)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _verdicts(next(report.glob("*.json"))) == installed_verdicts
