#!/bin/bash
# Session 15, replacing queue_session15d.sh: its measurement (PID 9162, SNR 0.15 with 800
# particles) showed the hook at 7-10 A only, so a second set (400 particles at SNR 0.1) adds
# the 10-20 A the CW-RED ramp spans; then the CTF grid's missing cells on 7OK9 and 2XHE.
cd /work/main
while kill -0 9162 2>/dev/null; do sleep 20; done
venv/bin/python scripts/measure_default_denoiser.py --structures 4 --sets 0.15:800,0.1:400
B="venv/bin/python benchmarks/bench_quality.py --seeds 1"
$B --structures 7OK9,2XHE --ctf yes --snrs 0.04 --methods plain,cwred
