#!/bin/bash
# Session 12 queue, one refinement at a time: CW-RED with a largest lambda of 0.5 at 3ENL SNR
# 0.06 (seeds 1, 2: does the over-claim shrink, does the gain stay?) and 0.04; then the CTF
# rows at the lower end of the ladder (3ENL SNR 0.04, plain / CW-RED).
cd /work/main
B="venv/bin/python benchmarks/bench_quality.py --structures 3ENL --ctf no"
$B --snrs 0.06 --seeds 1 --methods cwred --lambda 0.5
$B --snrs 0.06 --seeds 2 --methods cwred --lambda 0.5
$B --snrs 0.04 --seeds 1 --methods cwred --lambda 0.5
venv/bin/python benchmarks/bench_quality.py --structures 3ENL --ctf yes --snrs 0.04 \
    --seeds 1 --methods plain,cwred
