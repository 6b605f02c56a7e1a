#!/bin/bash
# Session 12, after CW-RED with a largest lambda of 0.5 at 3ENL SNR 0.06 (seed 2, running):
# a prior-free local refinement after CW-RED (bench_polish.py) on both seeds, the CTF rows at
# the lower end of the ladder (3ENL SNR 0.04, plain / CW-RED), then the hook at lambda 0 in the
# quality benchmark (3ENL SNR 0.06: does it end where plain RELION ends?).
cd /work/main
while kill -0 10449 2>/dev/null; do sleep 20; done
R=benchmarks/results/quality_runs
venv/bin/python benchmarks/bench_polish.py $R/3ENL_snr0.06_ctf0_seed1/cwred_20-10_lambda0.5
venv/bin/python benchmarks/bench_polish.py $R/3ENL_snr0.06_ctf0_seed2/cwred_20-10_lambda0.5
venv/bin/python benchmarks/bench_quality.py --structures 3ENL --ctf yes --snrs 0.04 \
    --seeds 1 --methods plain,cwred
# (the lambda-0 row moved to queue_session12c.sh, after the CTF rows at SNR 0.02)
