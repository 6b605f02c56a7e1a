#!/bin/bash
# Session 9 queue, after the box-128 refinement ratio (bench_exrecon.py, quiet cores):
# 1. a second seed at 3ENL SNR 0.06, the one case where CW-RED's half-maps over-claim (4 shells
#    against plain's 0 with seed 1), to tell a property of the prior from the noise of the count;
# 2. CW-RED per shell there (the shipped model's per-shell table, at most the ramp's lambda in
#    every shell): does damping the shells where one pass adds little reduce the over-claim?
# 3. 7OK9 at the hardest level, SNR 0.04.
while pgrep -f bench_exrecon.py > /dev/null; do sleep 30; done
cd /work/bench_wt
PY=/work/main/venv/bin/python
R=/work/main/benchmarks/results
PYTHONPATH=/work/bench_wt nice -n 5 $PY benchmarks/bench_quality.py --structures 3ENL --snrs 0.06 --ctf no --seeds 2 --methods plain,cwred --results $R
PYTHONPATH=/work/bench_wt nice -n 5 $PY benchmarks/bench_quality.py --structures 3ENL --snrs 0.06 --ctf no --methods cwred-shell --results $R
PYTHONPATH=/work/bench_wt nice -n 5 $PY benchmarks/bench_quality.py --structures 7OK9 --snrs 0.04 --ctf no --methods plain,cwred --results $R
