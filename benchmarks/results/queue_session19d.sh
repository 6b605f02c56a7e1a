#!/bin/bash
# Session 19, after the clean-clone CI: the CTF row that queue_session19.sh left, 2XHE SNR 0.06.
cd /work/main
B="venv/bin/python benchmarks/bench_quality.py --seeds 1 --structures 2XHE --snrs 0.06 --ctf yes"
$B --methods plain && $B --methods cwred
