#!/bin/bash
# Session 13, after queue_session13.sh's 7OK9 CTF pair: does denoising half 2 in a turned frame
# (the hook's --half-views rotated) cut the over-claim at 3ENL SNR 0.06 (4 and 7 shells with the
# same frame, seeds 1 and 2), and does it keep the gain at SNR 0.04? Then the remaining grid
# cells: 2XHE with CTF at 0.02, 2XHE without CTF at 0.1.
cd /work/main
while kill -0 21252 2>/dev/null; do sleep 20; done
B="venv/bin/python benchmarks/bench_quality.py --structures 3ENL --ctf no --methods cwred"
$B --snrs 0.06 --seeds 1 --half-views rotated
$B --snrs 0.06 --seeds 2 --half-views rotated
$B --snrs 0.04 --seeds 1 --half-views rotated
B="venv/bin/python benchmarks/bench_quality.py --seeds 1 --methods plain,cwred"
$B --structures 2XHE --ctf yes --snrs 0.02
$B --structures 2XHE --ctf no --snrs 0.1
