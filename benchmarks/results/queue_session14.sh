#!/bin/bash
# Session 14: the grid's missing cells (SNR 0.25 without CTF on 7OK9 and 2XHE, CW-RED at 3ENL
# 0.25, CTF at 0.04 on 7OK9 and 2XHE), CW-RED with the direct x~ where only gridded runs existed
# (3ENL 0.04 and 0.1), and a third seed at 3ENL SNR 0.06 (the over-claim cell).
cd /work/main
while kill -0 1573 2>/dev/null; do sleep 20; done
while [ ! -f venv/.redprior_setup_stamp ]; do sleep 20; done
B="venv/bin/python benchmarks/bench_quality.py --seeds 1"
$B --structures 3ENL --ctf no --snrs 0.04 --methods cwred
$B --structures 7OK9,2XHE --ctf no --snrs 0.25 --methods plain,cwred
$B --structures 3ENL --ctf no --snrs 0.25 --methods cwred
$B --structures 3ENL --ctf no --snrs 0.1 --methods cwred
$B --structures 7OK9,2XHE --ctf yes --snrs 0.04 --methods plain,cwred
venv/bin/python benchmarks/bench_quality.py --structures 3ENL --ctf no --snrs 0.06 --seeds 3 --methods plain,cwred
