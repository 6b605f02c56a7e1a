#!/bin/bash
# Session 15, replacing queue_session15b.sh: at SNR 0.04 with 800 particles the first held-out
# structure (an LDH) stayed at 21 A for 15 iterations (18 min), so the measurement runs at SNR
# 0.1 and 0.25 (their first iterations pass through 20-10 A too); then the CTF grid's missing
# cells on 7OK9 and 2XHE at SNR 0.04, then CW-RED with the direct x~ at 3ENL 0.1.
cd /work/main
venv/bin/python scripts/measure_default_denoiser.py --structures 4 --snrs 0.1,0.25
B="venv/bin/python benchmarks/bench_quality.py --seeds 1"
$B --structures 7OK9,2XHE --ctf yes --snrs 0.04 --methods plain,cwred
$B --structures 3ENL --ctf no --snrs 0.1 --methods cwred
