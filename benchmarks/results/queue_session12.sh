#!/bin/bash
# Session 12 queue, one refinement at a time: CW-RED with a largest lambda of 0.5 at 3ENL SNR
# 0.06 (seeds 1, 2: does the over-claim shrink, does the gain stay?). Seed 1 gave 6.10 A and
# 3 shells over-claimed (lambda 1: 5.57 A, 4 shells), so the 0.04 run planned after it was
# dropped for the CTF and lambda-0 rows (queue_session12b.sh).
cd /work/main
B="venv/bin/python benchmarks/bench_quality.py --structures 3ENL --ctf no"
$B --snrs 0.06 --seeds 1 --methods cwred --lambda 0.5
$B --snrs 0.06 --seeds 2 --methods cwred --lambda 0.5
