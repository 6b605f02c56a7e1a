#!/bin/bash
# Session 4, second queue: waits for the first, then RED at SNR 0.25 (does the denoiser hurt where plain RELION reaches Nyquist?)
while kill -0 16567 2>/dev/null; do sleep 30; done
cd /work/bench_wt
export PYTHONPATH=/work/bench_wt
/work/main/venv/bin/python benchmarks/bench_quality.py --structures 3ENL --snrs 0.25 --ctf no --methods red --results /work/main/benchmarks/results
cd /work/bench_wt && /work/main/venv/bin/python benchmarks/bench_bias.py --cw 20,10 --methods plain --results /work/main/benchmarks/results
echo QUEUE B DONE
