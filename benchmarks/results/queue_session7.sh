#!/bin/bash
# Session 7 queue: the shipped schedule (CW-RED 20/10, direct x~) against plain RELION on the
# two other reserved structures at the SNR where plain RELION reaches ~4-5 A on 3ENL (0.1),
# then at the hardest level (0.04), so each structure has the same SNR ladder as 3ENL.
cd /work/bench_wt
PY=/work/main/venv/bin/python
R=/work/main/benchmarks/results
for snr in 0.1 0.04; do
  for s in 2XHE 7OK9; do
    PYTHONPATH=/work/bench_wt nice -n 5 $PY benchmarks/bench_quality.py --structures $s --snrs $snr --ctf no --methods plain,cwred --results $R
  done
done
