#!/bin/bash
# Session 6 queue: after the stage-2 fine-tune (scripts/train_default_denoiser.py
# --start-from shipped, /work/candidate) and the box-128 ratio run, the candidate denoiser on
# 3ENL where the shipped one over-estimates (SNR 0.06) and where plain RELION ends near 10 A
# (0.04); then the Gaussian (plain) control of the pure-noise bias benchmark.
while pgrep -f train_default_denoiser.py > /dev/null || pgrep -f bench_exrecon.py > /dev/null; do sleep 30; done
cd /work/bench_wt
PY=/work/main/venv/bin/python
R=/work/main/benchmarks/results
M=/work/candidate/out/redprior_default_denoiser.keras
[ -f $M ] && PYTHONPATH=/work/bench_wt nice -n 5 $PY benchmarks/bench_quality.py --structures 3ENL --snrs 0.06 --ctf no --methods cwred --model $M --results $R
[ -f $M ] && PYTHONPATH=/work/bench_wt nice -n 5 $PY benchmarks/bench_quality.py --structures 3ENL --snrs 0.04 --ctf no --methods cwred --model $M --results $R
PYTHONPATH=/work/bench_wt nice -n 5 $PY benchmarks/bench_bias.py --cw 20,10 --methods plain --results $R
