#!/usr/bin/env bash
# Hardware counters of triton-flash's kernels on the GPU (Nsight Compute), one device call:
#   device tool: run(command="bash scripts/gpu_triton_ncu.sh", timeout_s=300)
# For each shape (SHAPES, "batch:seqlen:causal" words; default the peer table's 4k and 16k, full and causal) ncu
# profiles one forward+backward (scripts/triton_ncu_workload.py) with the full section set and the clocks left
# alone (--clock-control none, as the device tool's METHOD.md asks). Back in $OUT: <shape>.ncu-rep (open in
# Nsight Compute), <shape>.csv.gz (every metric of every kernel, ncu --page raw), summary.txt, and pipes.txt: per
# kernel its duration and the busiest pipes (tensor, FMA, ALU, XU = the exp2 unit), issue-slot use and occupancy.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu_triton_ncu}
mkdir -p "$out"
{ date -u +"date %Y-%m-%dT%H:%M:%SZ"; echo "commit ${ATTNCONF_COMMIT:-unknown}"
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  ncu --version | tail -1; } > "$out/summary.txt" 2>&1
for shape in ${SHAPES:-4:4096:0 4:4096:1 1:16384:0}; do
  IFS=: read -r batch seqlen causal <<< "$shape"
  name="b${batch}-s${seqlen}-$([ "$causal" = 1 ] && echo causal || echo full)"
  timeout -k 10 ${SHAPE_TIMEOUT:-150} ncu --clock-control none --profile-from-start off --set full \
    --import-source no -f -o "$out/$name" python3 scripts/triton_ncu_workload.py "$batch" "$seqlen" "$causal" \
    > "$out/$name.log" 2>&1
  echo "$name: ncu exit $?" >> "$out/summary.txt"
  ncu --import "$out/$name.ncu-rep" --csv --page raw > "$out/$name.csv" 2>> "$out/$name.log"
done
python3 - "$out" <<'PY' > "$out/pipes.txt" 2>&1
import csv, pathlib, sys
out = pathlib.Path(sys.argv[1])
WANTED = ["gpu__time_duration.sum", "sm__throughput.avg.pct_of_peak_sustained_elapsed",
          "smsp__issue_active.avg.pct_of_peak_sustained_active", "sm__warps_active.avg.pct_of_peak_sustained_active",
          "launch__registers_per_thread", "launch__occupancy_limit_registers", "launch__occupancy_limit_shared_mem"]
for path in sorted(out.glob("*.csv")):
    rows = list(csv.reader(path.open()))
    if len(rows) < 3:
        continue
    header, body = rows[0], rows[2:]  # row 1 holds the units
    pipes = [h for h in header if h.startswith(("sm__inst_executed_pipe_", "sm__pipe_"))
             and h.endswith(".avg.pct_of_peak_sustained_active")]
    stalls = [h for h in header if h.startswith("smsp__average_warps_issue_stalled_")
              and h.endswith("_per_issue_active.ratio")]
    print(f"== {path.stem}")
    for row in body:
        values = dict(zip(header, row))
        print(f"  {values.get('Kernel Name', '?')[:40]}: " + ", ".join(f"{w.split('.')[0]}={values.get(w, '?')}" for w in WANTED))
        busiest = sorted(((float(values[p].replace(',', '') or 0), p) for p in pipes if values.get(p, '').replace(',', '').replace('.', '', 1).isdigit()), reverse=True)[:12]
        print("    pipes %: " + "; ".join(f"{p.split('.')[0]}={v:.1f}" for v, p in busiest))
        waits = sorted(((float(values[h]), h) for h in stalls if values.get(h, "").replace(".", "", 1).isdigit()),
                       reverse=True)[:8]
        print("    stalls per issue: " + "; ".join(f"{h[34:-23]}={v:.2f}" for v, h in waits))
PY
(cd "$out" && tar czf logs.tar.gz ./*.log && rm -f ./*.log && gzip -f ./*.csv)
cat "$out/summary.txt" "$out/pipes.txt"
