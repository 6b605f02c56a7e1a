#!/bin/bash
# Session 12, after the CTF pair at SNR 0.04 (plain RELION reached 4.13 A there): the CTF rows
# one step lower (SNR 0.02), then (dropped, see below) the hook at lambda 0 at 3ENL SNR 0.06.
cd /work/main
while kill -0 11211 2>/dev/null; do sleep 20; done
venv/bin/python benchmarks/bench_quality.py --structures 3ENL --ctf yes --snrs 0.02 \
    --seeds 1 --methods plain,cwred
# The lambda-0 row (--ctf no --snrs 0.06 --methods lambda0) was dropped before it started: the
# session's clean-clone CI needed the cores.
