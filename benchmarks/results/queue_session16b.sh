#!/bin/bash
# Session 16, replacing queue_session16.sh after its curve-ramp run (PID 23231): the shipped
# CW-RED at 3ENL SNR 0.1 with direct x~, then the report; the lower CTF level (3ENL SNR 0.015)
# waits, so that the clean-clone CI runs on quiet cores before the session ends.
cd /work/main
while kill -0 23231 2>/dev/null; do sleep 20; done
B="venv/bin/python benchmarks/bench_quality.py --seeds 1"
$B --structures 3ENL --ctf no --snrs 0.1 --methods cwred
$B --report
