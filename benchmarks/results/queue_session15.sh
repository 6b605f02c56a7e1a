#!/bin/bash
# Session 15, after the clean-clone CI (PID 2854) and the venv setup, one job at a time:
# the shipped model measured on RELION intermediates of its held-out structures (issue 12,
# item 2), then the CTF grid's missing cells on 7OK9 and 2XHE at SNR 0.04.
cd /work/main
while kill -0 2854 2>/dev/null; do sleep 20; done
while ! grep -q SETUPDONE /tmp/setup.log; do sleep 20; done
venv/bin/python scripts/measure_default_denoiser.py --structures 4
B="venv/bin/python benchmarks/bench_quality.py --seeds 1"
$B --structures 7OK9,2XHE --ctf yes --snrs 0.04 --methods plain,cwred
