#!/bin/bash
# Session 14, replacing queue_session14.sh after its first run (3ENL 0.04 CW-RED, direct x~):
# the grid's missing cells first (SNR 0.25 without CTF on 7OK9 and 2XHE, CW-RED at 3ENL 0.25,
# 7OK9 and 2XHE with CTF at 0.04), then CW-RED with the direct x~ at 3ENL 0.1.
cd /work/main
while kill -0 6722 2>/dev/null; do sleep 20; done
B="venv/bin/python benchmarks/bench_quality.py --seeds 1"
$B --structures 7OK9,2XHE --ctf no --snrs 0.25 --methods plain,cwred
$B --structures 3ENL --ctf no --snrs 0.25 --methods cwred
$B --structures 7OK9,2XHE --ctf yes --snrs 0.04 --methods plain,cwred
$B --structures 3ENL --ctf no --snrs 0.1 --methods cwred
