#!/bin/bash
# session 5, queue c: after the whole-refinement ratio run, the other reserved structures
while kill -0 13528 2>/dev/null; do sleep 10; done
cd /work/bench_wt && git checkout -q --detach eaad301aaab4af1b54ea10c2c5e0af3bbe3c89d9
PY=/work/main/venv/bin/python
R=/work/main/benchmarks/results
export PYTHONPATH=/work/bench_wt
Q="nice -n 19 $PY benchmarks/bench_quality.py --results $R --ctf no --cw 20,10"
$Q --structures 2XHE --snrs 0.06 --methods plain,cwred
