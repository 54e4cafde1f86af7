#!/usr/bin/env bash
# The GPU benchmark run. Each phase fits one device call (at most ~9 minutes):
#   bash scripts/gpu_bench.sh baseline   the full GPU set (--bench-set gpu) for every registered implementation,
#                                        saved as a new run in reports/benchmarks/<gpu>-torch<version>/
#                                        (pytest-benchmark storage; earlier runs there are kept: the history)
#   bash scripts/gpu_bench.sh recheck [NNNN]
#                                        the same set again, compared with run NNNN (default: the newest
#                                        *_baseline.json) with --benchmark-compare-fail=median:10%: it must report
#                                        no regression; then a deliberately slowed copy of one implementation
#                                        (benchmarks/slowed_impl.py, default sdpa-flash) compared with it: it must
#                                        be reported as a regression
#   bash scripts/gpu_bench.sh all        both in one call, each full run with half the time
# Every phase ends with python -m attnconf.report and packs results, report and plots into $OUT/gpu_bench.tar.gz.
# The regression check compares medians: a slower implementation moves every round, while a few rounds slowed by the
# host (a preempted thread, an allocator call) move the mean by more than 10% without saying anything about it.
# It leaves out host-bound cases (--bench-host-bound=skip: the host takes longer to queue the call than the device
# clock's head start covers, so the host CPU's speed sets the time); the baseline keeps them.
# Usage with the device tool:  run(command="bash scripts/gpu_bench.sh baseline", kind="nvidia-h100-x1",
#   timeout_s=570, carry=[".carry/fa2", ".carry/fa4"])  (the carry adds flash-attn 2 and 4: scripts/gpu_site.sh
#   unpacks them; the copy there has no .git: ATTNCONF_COMMIT=<git rev-parse --short HEAD> records the commit)
# then, here:  tar xzf <files_at>/gpu_bench.tar.gz   (at the repository root; adds the run to the history)
#              python -m attnconf.report             (regenerates reports/ with every storage)
# A recheck in a later call needs the baseline's JSON in the working tree (commit or keep it there).
# Environment: FRESH=1 (baseline) starts a new history; SAVE names the baseline phase's saved run (default baseline:
# a recheck compares with the newest *_baseline.json); REPORT=0 packs the storage alone, without the report; TOTAL (s, default 540) is what the phase may take, shared
# out as --bench-budget (override with BUDGET); SLOWED_IMPL names the slowed implementation; BENCH_ARGS adds pytest
# arguments to every run (e.g. "--impl sdpa-*"); DEVICE and STORAGE (default cuda and
# reports/benchmarks/<device>-torch<version>) exist for a dry run of this script on a CPU.
set -uo pipefail
out=${OUT:-/tmp/gpu_bench}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# compile in-process: an inductor worker pool left running would take CPU from the timings that follow
export TORCHINDUCTOR_COMPILE_THREADS=1
what=${1:-all}
case "$what" in baseline|recheck|all) ;; *) echo "usage: $0 baseline | recheck [NNNN] | all" >&2; exit 2 ;; esac
slowed=${SLOWED_IMPL:-sdpa-flash}
summary="$out/summary.txt"
started=$(date +%s)
if [ -d .carry ] && [ -f scripts/gpu_site.sh ]; then
  # shellcheck disable=SC1091
  source scripts/gpu_site.sh  # carried packages (flash-attn 2 / 4), when the call carries them
fi
# shellcheck disable=SC1091
source scripts/gpu_plugins.sh  # the pytest plugins, where attnconf is not installed (the device tool's copy)

{
  date -u +"date %Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  python3 -c "import torch, triton, pytest_benchmark as pb; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'triton', triton.__version__, 'pytest-benchmark', pb.__version__)"
} 2>&1 | tee "$summary"

device=${DEVICE:-cuda}
storage=${STORAGE:-reports/benchmarks/$(python3 -c "import torch; from attnconf.benchmarking import storage_name
print(storage_name(torch.device('$device')))")}
[ "${FRESH:-0}" = 1 ] && [ "$what" != recheck ] && rm -rf "$storage"

# the time left after setup, less start-up and report (~60 s), and for a recheck the slowed run (~70 s)
left=$(( ${TOTAL:-540} - ($(date +%s) - started) - 60 ))
case "$what" in
  baseline) budget=${BUDGET:-$left} ;;
  recheck) budget=${BUDGET:-$(( left - 70 ))} ;;
  all) budget=${BUDGET:-$(( (left - 70 - 30) / 2 ))} ;;
esac
echo "$what: budget per full run: $budget s" | tee -a "$summary"

common=(benchmarks --benchmark-only -q -p no:cacheprovider --device "$device" --benchmark-storage="$storage"
        --benchmark-disable-gc
        --benchmark-columns=min,median,mean,stddev,rounds -rs --durations=30)
# shellcheck disable=SC2206  # BENCH_ARGS is a word list on purpose
extra=(${BENCH_ARGS:-})

phase() {  # phase NAME [pytest args...]: one pytest run, its log in $OUT/NAME.log
  local name=$1 t0=$SECONDS rc
  shift
  timeout -s INT -k 30 $((budget + 120)) python3 -m pytest "${common[@]}" "${extra[@]}" "$@" >"$out/$name.log" 2>&1
  rc=$?
  echo "$name: pytest exit $rc after $((SECONDS - t0)) s; $(grep -E '^[0-9]+ (passed|failed|skipped)' "$out/$name.log" \
    | tail -1)" | tee -a "$summary"
  return $rc
}

if [ "$what" != recheck ]; then
  phase baseline --bench-budget "$budget" --benchmark-save="${SAVE:-baseline}"
fi
if [ "$what" = recheck ] && [ -n "${2:-}" ]; then
  base_file=$(ls "$storage"/*/"$2"_*.json 2>/dev/null | head -1)
else
  saved=baseline
  [ "$what" = baseline ] && saved=${SAVE:-baseline}  # the run this phase saved
  base_file=$(ls "$storage"/*/[0-9][0-9][0-9][0-9]_"$saved".json 2>/dev/null | sort | tail -1)
fi
if [ -z "$base_file" ]; then
  echo "no baseline run found in $storage: see baseline.log" | tee -a "$summary"
  exit 1
fi
base=$(basename "$base_file" | cut -c1-4)
echo "baseline: $base_file" | tee -a "$summary"

report() {
  if [ "${REPORT:-1}" = 0 ]; then  # the run's storage only; the report is made afterwards, where the history is
    tar czf "$out/gpu_bench.tar.gz" "$storage"
    echo "total $(( $(date +%s) - started )) s (REPORT=0: no report made)" | tee -a "$summary"
    cat "$summary"
    return
  fi
  python3 -m attnconf.report --baseline "$base" >"$out/report.log" 2>&1 || echo "report failed: see report.log" \
    | tee -a "$summary"
  tar czf "$out/gpu_bench.tar.gz" "$storage" reports/plots reports/report.md reports/report.html 2>>"$out/report.log"
  echo "total $(( $(date +%s) - started )) s" | tee -a "$summary"
  cat "$summary"
}
if [ "$what" = baseline ]; then
  report
  exit 0
fi

phase recheck --bench-budget "$budget" --benchmark-save=recheck --benchmark-compare="$base" \
  --benchmark-compare-fail=median:10% --bench-host-bound=skip
if grep -q "Performance has regressed" "$out/recheck.log"; then
  echo "recheck: FALSE REGRESSION reported:" | tee -a "$summary"
  grep -E "^\s+test_" "$out/recheck.log" | grep -E "(mean|median|min|max)" | head -30 | tee -a "$summary"
else
  echo "recheck: no regression at median:10% against $base" | tee -a "$summary"
fi

ATTNCONF_SLOWED_IMPL=$slowed phase slowed --bench-budget 60 --impl-module attnconf.benchmarks.slowed_impl:slowed --impl "$slowed" \
  --benchmark-save="slowed-$slowed" --benchmark-compare="$base" --benchmark-compare-fail=median:10%
if grep -q "Performance has regressed" "$out/slowed.log"; then
  flagged=$(sed -n '/Performance has regressed/,$p' "$out/slowed.log" | grep -cE "^\s+test_")
  echo "slowed $slowed: regression reported as expected ($flagged benchmarks beyond median:10%)" | tee -a "$summary"
else
  echo "slowed $slowed: NO regression reported (the comparison failed to catch it)" | tee -a "$summary"
fi
report
