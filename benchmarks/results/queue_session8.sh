#!/bin/bash
# Session 8 queue: after the mixed fine-tune (scripts/train_default_denoiser.py --start-from
# shipped --relion-structures 10 --relion-snrs 0.1 --mix-gaussian 2), the candidate on the
# three fastest cases where the shipped model was judged (SNR 0.06: 3ENL, 7OK9, 2XHE), with
# the shipped ramp 20/10 so that only the model differs.
while pgrep -f train_default_denoiser.py > /dev/null; do sleep 30; done
cd /work/bench_wt
PY=/work/main/venv/bin/python
R=/work/main/benchmarks/results
M=/work/main/benchmarks/results/candidate_mixed_denoiser/redprior_default_denoiser.keras
for S in 3ENL 2XHE 7OK9; do
  [ -f $M ] && PYTHONPATH=/work/bench_wt nice -n 5 $PY benchmarks/bench_quality.py --structures $S --snrs 0.06 --ctf no --methods cwred --cw 20,10 --model $M --results $R
done
