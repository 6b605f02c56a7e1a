#!/bin/bash
# Session 15, replacing queue_session15.sh (its measurement failed before any refinement: the
# script did not run from the Scipion project's folder), one job at a time: the shipped model
# on RELION intermediates of its held-out structures (issue 12, item 2), then the CTF grid's
# missing cells on 7OK9 and 2XHE at SNR 0.04, then CW-RED with the direct x~ at 3ENL 0.1.
cd /work/main
venv/bin/python scripts/measure_default_denoiser.py --structures 4
B="venv/bin/python benchmarks/bench_quality.py --seeds 1"
$B --structures 7OK9,2XHE --ctf yes --snrs 0.04 --methods plain,cwred
$B --structures 3ENL --ctf no --snrs 0.1 --methods cwred
