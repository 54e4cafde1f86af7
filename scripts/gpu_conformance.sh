#!/usr/bin/env bash
# The GPU conformance run: every implementation that can run on the device, matrix written under $OUT (or
# reports/conformance when $OUT is unset). Usage on a GPU machine: bash scripts/gpu_conformance.sh [pytest args]
# TESTS (default: conformance) names what pytest collects, e.g. TESTS=conformance/test_varlen.py: a path given among
# the pytest args would be collected in addition to the whole suite, not instead of it.
set -uo pipefail
out=${OUT:-reports}
mkdir -p "$out/conformance"
export PYTHONUNBUFFERED=1
# shellcheck disable=SC1091
source "$(dirname "$0")/gpu_plugins.sh"  # the pytest plugins, where attnconf is not installed
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"
# shellcheck disable=SC2086  # TESTS may name several paths
python3 -m pytest ${TESTS:-conformance} -q -p no:cacheprovider --device cuda --conformance-report "$out/conformance" "$@" 2>&1 \
  | tee "$out/conformance/pytest.log" | tail -n 60
