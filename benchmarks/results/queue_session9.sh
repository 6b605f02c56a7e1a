#!/bin/bash
# Session 9 queue, after the box-128 refinement ratio (bench_exrecon.py, quiet cores):
# 1. the first pair with CTF (3ENL, SNR 0.1, where plain RELION without CTF reached 4.3 A):
#    real data always has one;
# 2. a second seed at 3ENL SNR 0.06, the one case where CW-RED's half-maps over-claim (4 shells
#    against plain's 0 with seed 1), to tell a property of the prior from the noise of the count;
# 3. CW-RED per shell there (the shipped model's per-shell table, at most the ramp's lambda in
#    every shell): does damping the shells where one pass adds little reduce the over-claim?
while pgrep -f bench_exrecon.py > /dev/null; do sleep 30; done
cd /work/bench_wt
PY=/work/main/venv/bin/python
R=/work/main/benchmarks/results
PYTHONPATH=/work/bench_wt nice -n 5 $PY benchmarks/bench_quality.py --structures 3ENL --snrs 0.1 --ctf yes --methods plain,cwred --results $R
PYTHONPATH=/work/bench_wt nice -n 5 $PY benchmarks/bench_quality.py --structures 3ENL --snrs 0.06 --ctf no --seeds 2 --methods plain,cwred --results $R
PYTHONPATH=/work/bench_wt nice -n 5 $PY benchmarks/bench_quality.py --structures 3ENL --snrs 0.06 --ctf no --methods cwred-shell --results $R
