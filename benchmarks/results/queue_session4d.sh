#!/bin/bash
# Session 4, fourth queue (replaces the third): after queue B, SNR 0.06 (where plain RELION should end
# between 4.5 and 10 A, the regime the quick ladder missed): plain and CW-RED 20/10; then CW-RED 20/10 at 0.1, 0.25
while kill -0 24523 2>/dev/null; do sleep 20; done
cd /work/bench_wt
export PYTHONPATH=/work/bench_wt
/work/main/venv/bin/python benchmarks/bench_quality.py --structures 3ENL --snrs 0.06 --ctf no --methods plain,cwred --cw 20,10 --results /work/main/benchmarks/results
/work/main/venv/bin/python benchmarks/bench_quality.py --structures 3ENL --snrs 0.1,0.25 --ctf no --methods cwred --cw 20,10 --results /work/main/benchmarks/results
echo QUEUE D DONE
