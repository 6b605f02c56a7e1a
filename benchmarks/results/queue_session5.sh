#!/bin/bash
# session 5 queue: one refinement at a time (2 cores), frozen code in /work/bench_wt
cd /work/bench_wt
PY=/work/main/venv/bin/python
R=/work/main/benchmarks/results
export PYTHONPATH=/work/bench_wt
Q="nice -n 19 $PY benchmarks/bench_quality.py --results $R --structures 3ENL --ctf no --cw 20,10"
$Q --snrs 0.06 --methods cwred --cap
$Q --snrs 0.06 --methods cwred
$Q --snrs 0.04 --methods cwred --cap
$Q --snrs 0.1 --methods cwred --cap
nice -n 19 $PY benchmarks/bench_exrecon.py --skip-calls --folder /tmp/bex_refine64 --refine-box 64 > $R/refine_ratio_box64.log 2>&1
