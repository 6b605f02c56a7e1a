#!/bin/bash
# Session 12, after CW-RED with a largest lambda of 0.5 at 3ENL SNR 0.06 (seed 2, running):
# the CTF rows at the lower end of the ladder (3ENL SNR 0.04, plain / CW-RED), then the hook at
# lambda 0 in the quality benchmark (3ENL SNR 0.06: does it end where plain RELION ends?).
cd /work/main
while kill -0 10449 2>/dev/null; do sleep 20; done
venv/bin/python benchmarks/bench_quality.py --structures 3ENL --ctf yes --snrs 0.04 \
    --seeds 1 --methods plain,cwred
venv/bin/python benchmarks/bench_quality.py --structures 3ENL --ctf no --snrs 0.06 \
    --seeds 1 --methods lambda0
