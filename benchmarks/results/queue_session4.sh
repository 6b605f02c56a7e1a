#!/bin/bash
# Session 4 background queue (serial, nice 19), run from the frozen worktree /work/bench_wt.
cd /work/bench_wt
PY=/work/main/venv/bin/python
R=/work/main/benchmarks/results
export PYTHONPATH=/work/bench_wt
$PY benchmarks/bench_bias.py --cw 20,10 --methods red,cwred,plain --results $R
$PY benchmarks/bench_quality.py --structures 3ENL --snrs 0.04,0.1,0.25 --ctf no --methods cwred --cw 20,10 --results $R
echo QUEUE DONE
