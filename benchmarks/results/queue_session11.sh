#!/bin/bash
# Session 11 queue, after the box-128 refinement ratio with the lambda-0 run (bench_exrecon.py,
# quiet cores):
# 1. CTF at SNR 0.06 (3ENL): at SNR 0.1 with CTF both methods reached Nyquist, so the CTF grid
#    starts where plain RELION without CTF ends at 8 A;
# 2. 7OK9 at SNR 0.04, the lowest rung, missing for that structure.
while pgrep -f bench_exrecon.py > /dev/null; do sleep 30; done
cd /work/bench_wt
PY=/work/main/venv/bin/python
R=/work/main/benchmarks/results
PYTHONPATH=/work/bench_wt nice -n 5 $PY benchmarks/bench_quality.py --structures 3ENL --snrs 0.06 --ctf yes --methods plain,cwred --results $R
PYTHONPATH=/work/bench_wt nice -n 5 $PY benchmarks/bench_quality.py --structures 7OK9 --snrs 0.04 --ctf no --methods plain,cwred --results $R
