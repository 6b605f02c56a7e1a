#!/bin/bash
# Session 20: --lowpass-reference (each half's reference cut at the current resolution) over the
# pairs where the shipped CW-RED gains the most over plain RELION, cheapest first: does it keep the
# gain everywhere? If so it can become the default. The 3ENL SNR 0.04 / 0.06 rows are already in.
# Starts no new refinement after DEADLINE, so that the clean-clone CI runs on quiet cores.
cd /work/main
DEADLINE=$(date -d "today 02:40" +%s)
B="venv/bin/python benchmarks/bench_quality.py --methods cwred --seeds 1 --lowpass-reference"
for job in "2XHE 0.06 no" "2XHE 0.1 no" "2XHE 0.02 yes" "7OK9 0.06 no" "7OK9 0.02 yes" \
           "7OK9 0.1 no" "3ENL 0.02 yes" "3ENL 0.08 no"; do
  set -- $job
  [ "$(date +%s)" -lt "$DEADLINE" ] || { echo "deadline: stop before $1 $2 ctf $3"; break; }
  $B --structures $1 --snrs $2 --ctf $3
done
venv/bin/python benchmarks/bench_quality.py --report
