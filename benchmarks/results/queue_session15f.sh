#!/bin/bash
# Session 15, replacing queue_session15e.sh after its measurement (PID 10305): the measurement
# written into the shipped metadata (the runs are reused, only the single pass is repeated),
# then CW-RED per shell with that per-shell table at 3ENL SNR 0.06 (where the over-claim
# criterion fails), instead of the CTF cells, which wait for the next session.
cd /work/main
while kill -0 10305 2>/dev/null; do sleep 20; done
venv/bin/python scripts/measure_default_denoiser.py --structures 4 --sets 0.15:800,0.1:400 --write
venv/bin/python benchmarks/bench_quality.py --seeds 1 --structures 3ENL --ctf no --snrs 0.06 --methods cwred-shell
