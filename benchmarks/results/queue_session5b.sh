#!/bin/bash
# session 5, queue b: after the running refinement, one job at a time (2 cores)
while kill -0 11527 2>/dev/null; do sleep 10; done
cd /work/bench_wt && git checkout -q --detach ee7c244866dcf76c2d2893cf5da62381ce730c48
PY=/work/main/venv/bin/python
R=/work/main/benchmarks/results
export PYTHONPATH=/work/bench_wt
$PY benchmarks/bench_quality.py --results $R --reevaluate > /dev/null 2>&1
# issue 11: one hook call per box and pad, with the direct denoiser input
nice -n 19 $PY benchmarks/bench_exrecon.py --skip-refine --folder /tmp/bex_s5 --boxes 64,128,256 --pads 1,2 > $R/exrecon_calls_s5.log 2>&1
Q="nice -n 19 $PY benchmarks/bench_quality.py --results $R --ctf no --cw 20,10"
$Q --structures 7OK9 --snrs 0.06 --methods plain,cwred
# issue 11: whole refinement, CW-RED / plain at box 64, run side by side
nice -n 19 $PY benchmarks/bench_exrecon.py --skip-calls --folder /tmp/bex_refine64 --refine-box 64 > $R/refine_ratio_box64.log 2>&1
$Q --structures 2XHE --snrs 0.06 --methods plain,cwred
