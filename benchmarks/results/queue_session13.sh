#!/bin/bash
# Session 13 queue, one refinement at a time: the open grid cells of issue 12. CTF at SNR 0.02
# (where 3ENL's plain RELION ends at 8 A) for 7OK9 and 2XHE, then 2XHE without CTF at 0.1.
# Stopped after its first line (7OK9): queue_session13b.sh runs the rest, after a rotated-
# input experiment on the over-claim.
cd /work/main
B="venv/bin/python benchmarks/bench_quality.py --methods plain,cwred --seeds 1"
$B --structures 7OK9 --ctf yes --snrs 0.02
$B --structures 2XHE --ctf yes --snrs 0.02
$B --structures 2XHE --ctf no --snrs 0.1
