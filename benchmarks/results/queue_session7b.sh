#!/bin/bash
# Session 7, after queue_session7.sh: 2XHE at SNR 0.1 (its source, python-biopython-doc, was
# missing on this machine when the first queue reached it).
while pgrep -f queue_session7.sh > /dev/null; do sleep 30; done
cd /work/bench_wt
PYTHONPATH=/work/bench_wt nice -n 5 /work/main/venv/bin/python benchmarks/bench_quality.py --structures 2XHE --snrs 0.1 --ctf no --methods plain,cwred --results /work/main/benchmarks/results
