#!/bin/bash
# Session 16, after the clean-clone CI (PID 24474): CW-RED as shipped with the prior limited to
# a fixed 8 A (--prior-up-to 8) at 3ENL SNR 0.06 without CTF, seeds 1 and 2, where the
# over-claim criterion fails: beyond 8 A each half's reference would be its own data's.
cd /work/main
while kill -0 24474 2>/dev/null; do sleep 20; done
B="venv/bin/python benchmarks/bench_quality.py"
$B --seeds 1 --structures 3ENL --ctf no --snrs 0.06 --methods cwred --prior-up-to 8
$B --seeds 2 --structures 3ENL --ctf no --snrs 0.06 --methods cwred --prior-up-to 8
$B --report
