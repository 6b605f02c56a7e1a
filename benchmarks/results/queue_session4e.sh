#!/bin/bash
# after CW-RED 20/10 at SNR 0.1 has its metrics: stop queue D (its 0.25 run equals RED there) and
# run CW-RED with the paper's ramp at SNR 0.06 instead (does it over-estimate less?)
M=/work/main/benchmarks/results/quality_runs/3ENL_snr0.1_ctf0_seed1/cwred_20-10/metrics.json
while [ ! -f $M ]; do sleep 10; done
sleep 3
pkill -f queue_session4d.sh
P=$(pgrep -f "bench_quality.py --structures 3ENL --snrs 0.1,0.25" | head -1)
[ -n "$P" ] && pkill -TERM -P $P; [ -n "$P" ] && kill $P; sleep 3
pkill -f "relion_refine_mpi --o ../cwred_20-10/run"; pkill -f "redprior_worker"; sleep 2
rm -rf /work/main/benchmarks/results/quality_runs/3ENL_snr0.25_ctf0_seed1/cwred_20-10
echo "stopped queue D at $(date)"
cd /work/bench_wt && PYTHONPATH=/work/bench_wt nice -n 19 /work/main/venv/bin/python benchmarks/bench_quality.py --structures 3ENL --snrs 0.06 --ctf no --methods cwred --cw 10,4.5 --results /work/main/benchmarks/results
echo "WATCH DONE $(date)"
