#!/bin/bash
# Session 16: the CTF cells at SNR 0.04 for 7OK9 and 2XHE, the curve's own ramp (17.3 / 7.8 A)
# at 3ENL SNR 0.06 (where the over-claim criterion fails), the shipped CW-RED at 3ENL SNR 0.1
# with direct x~, then a lower CTF level for 3ENL (plain RELION ends at 8.0 A at SNR 0.02).
cd /work/main
B="venv/bin/python benchmarks/bench_quality.py --seeds 1"
$B --structures 7OK9,2XHE --ctf yes --snrs 0.04 --methods plain,cwred
$B --structures 3ENL --ctf no --snrs 0.06 --methods cwred --cw 17.3,7.8
$B --structures 3ENL --ctf no --snrs 0.1 --methods cwred
$B --structures 3ENL --ctf yes --snrs 0.015 --methods plain,cwred
$B --report
