#!/bin/bash
# Session 15, replacing queue_session15c.sh: at SNR 0.1 one refinement took ~1 min an
# iteration, 2 SNRs x 4 structures would not leave time for the rest, so one SNR (0.15) per
# structure; then the CTF grid's missing cells on 7OK9 and 2XHE at SNR 0.04.
cd /work/main
venv/bin/python scripts/measure_default_denoiser.py --structures 4 --snrs 0.15
B="venv/bin/python benchmarks/bench_quality.py --seeds 1"
$B --structures 7OK9,2XHE --ctf yes --snrs 0.04 --methods plain,cwred
