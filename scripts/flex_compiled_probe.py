"""Why compiled flex fails VARLEN-1 on CUDA with inductor's NoValidChoicesError: one GPU command, results under $OUT.

Usage on the device machine (repository root):  python3 scripts/flex_compiled_probe.py
Phases (each variant in its own process, so no compiled graph or dynamo guard carries over):

1. cases: the failing example alone (packed lengths (0, 29, 17, 23), float32, 2 query heads over 1 key/value head,
   forward) and variants that change one thing: dtype, GQA, the empty sequence, inductor's tile sizes
   (``kernel_options``), ``dynamic``; each compared with eager flex on the same inputs;
2. history: ``test_packed_equals_each_sequence_alone[flex-compiled]`` in one process as the suite runs it
   (derandomized ``ci`` profile) but without shrinking, printing every example.

Inductor swallows a ZeroDivisionError while it renders a Triton template (the template then yields no choice, and
an empty choice list is the NoValidChoicesError); the probe prints where that division happened.
Files in $OUT: flex_probe.log, cases.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback

VARIANTS = {
    # name: (lengths_q, heads_q, heads_kv, dtype, kernel_options, dynamic)
    "failing": ((0, 29, 17, 23), 2, 1, "float32", None, True),
    "float16": ((0, 29, 17, 23), 2, 1, "float16", None, True),
    "no-gqa": ((0, 29, 17, 23), 2, 2, "float32", None, True),
    "gqa-3": ((0, 29, 17, 23), 3, 1, "float32", None, True),
    "no-empty": ((29, 17, 23), 2, 1, "float32", None, True),
    "one-seq-69": ((69,), 2, 1, "float32", None, True),
    "long-200": ((0, 129, 17, 54), 2, 1, "float32", None, True),
    "static": ((0, 29, 17, 23), 2, 1, "float32", None, False),
    "tiles-64x64": ((0, 29, 17, 23), 2, 1, "float32", {"BLOCK_M": 64, "BLOCK_N": 64}, True),
    "tiles-128x64": ((0, 29, 17, 23), 2, 1, "float32", {"BLOCK_M": 128, "BLOCK_N": 64}, True),
    "tiles-64x32": ((0, 29, 17, 23), 2, 1, "float32", {"BLOCK_M": 64, "BLOCK_N": 32}, True),
}


def trace_template_zero_division() -> None:
    """Print the traceback of a ZeroDivisionError raised while inductor renders a Triton template, then re-raise."""
    from torch._inductor import select_algorithm

    original = select_algorithm.TritonTemplateKernel.render

    def render(self, *args, **kwargs):
        try:
            return original(self, *args, **kwargs)
        except ZeroDivisionError:
            print("ZeroDivisionError while rendering a Triton template:", flush=True)
            traceback.print_exc()
            raise

    select_algorithm.TritonTemplateKernel.render = render


def run_variant(name: str) -> dict:
    import torch
    from torch.nn.attention.flex_attention import flex_attention

    from attnconf.impls.flex import _compile_settings, packed_block_mask

    lengths, heads_q, heads_kv, dtype_name, kernel_options, dynamic = VARIANTS[name]
    trace_template_zero_division()
    dtype = getattr(torch, dtype_name)
    device = torch.device("cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    total = sum(lengths)
    q = torch.randn(1, heads_q, total, 64, device=device, dtype=dtype, generator=gen)
    k = torch.randn(1, heads_kv, total, 64, device=device, dtype=dtype, generator=gen)
    v = torch.randn(1, heads_kv, total, 64, device=device, dtype=dtype, generator=gen)
    block_mask = packed_block_mask(lengths, lengths, None, device)
    gqa = heads_q != heads_kv
    expected = flex_attention(q, k, v, block_mask=block_mask, enable_gqa=gqa)
    compiled = torch.compile(flex_attention, dynamic=dynamic)
    result = dict(variant=name, lengths=lengths, heads=(heads_q, heads_kv), dtype=dtype_name,
                  kernel_options=kernel_options, dynamic=dynamic)
    try:
        with _compile_settings("cuda"):
            out = compiled(q, k, v, block_mask=block_mask, enable_gqa=gqa, kernel_options=kernel_options)
        torch.cuda.synchronize()
        result.update(ok=True, max_abs_diff_vs_eager=float((out.float() - expected.float()).abs().max()))
    except Exception as error:  # noqa: BLE001  the probe records whatever compile raises
        result.update(ok=False, error=f"{type(error).__name__}: {str(error).splitlines()[0][:300]}")
    return result


def run_history(log) -> int:
    """The suite's own test, in one process, no shrinking, every example printed."""
    code = (
        "import sys, pytest\n"
        "from hypothesis import HealthCheck, Phase, Verbosity, settings\n"
        "sys.path.insert(0, 'scripts')\n"
        "from flex_compiled_probe import trace_template_zero_division\n"
        "trace_template_zero_division()\n"
        "settings.register_profile('probe', max_examples=12, derandomize=True, deadline=None, print_blob=True,\n"
        "    phases=[Phase.explicit, Phase.reuse, Phase.generate], verbosity=Verbosity.verbose,\n"
        "    suppress_health_check=list(HealthCheck))\n"
        "sys.exit(pytest.main(['conformance/test_varlen.py::test_packed_equals_each_sequence_alone', '--impl',\n"
        "    'flex-compiled', '--device', 'cuda', '-q', '-p', 'no:cacheprovider', '--hypothesis-profile', 'probe',\n"
        "    '-s', '-x']))\n"
    )
    return subprocess.run([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT).returncode


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "variant":
        print("RESULT " + json.dumps(run_variant(sys.argv[2])), flush=True)
        return
    out = os.environ.get("OUT", "probe-out")
    os.makedirs(out, exist_ok=True)
    results = []
    with open(os.path.join(out, "flex_probe.log"), "w") as log:
        for name in VARIANTS:
            log.write(f"\n===== variant {name}\n")
            log.flush()
            proc = subprocess.run([sys.executable, __file__, "variant", name], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": os.getcwd()})
            log.write(proc.stdout + proc.stderr)
            lines = [text for text in proc.stdout.splitlines() if text.startswith("RESULT ")]
            result = json.loads(lines[0][7:]) if lines else dict(variant=name, ok=False, error=f"exit {proc.returncode}")
            results.append(result)
            print(json.dumps(result), flush=True)
            with open(os.path.join(out, "cases.json"), "w") as f:
                json.dump(results, f, indent=1)
        log.write("\n===== history\n")
        log.flush()
        print("history: pytest exit", run_history(log), flush=True)


if __name__ == "__main__":
    main()
