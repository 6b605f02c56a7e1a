#!/bin/bash
# Session 12, after the clean-clone CI: the hook at lambda 0 in the quality benchmark (3ENL SNR
# 0.06, no CTF, seed 1): does it end where plain RELION ends (8.00 A)?
cd /work/main
venv/bin/python benchmarks/bench_quality.py --structures 3ENL --ctf no --snrs 0.06 \
    --seeds 1 --methods lambda0
