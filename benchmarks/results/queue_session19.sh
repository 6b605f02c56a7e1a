#!/bin/bash
# Session 19: what session 18 left of its queue (7OK9 CTF SNR 0.06 CW-RED, 2XHE CTF SNR 0.06),
# then a third seed of 3ENL at SNR 0.06 without CTF, the one setting where CW-RED's half-maps
# claim more than one shell beyond plain RELION's (4 and 7 shells at seeds 1 and 2): how much
# of that count is the seed? Finished runs are cached, so they are skipped.
# Starts no new refinement after DEADLINE, so that the clean-clone CI runs on quiet cores.
cd /work/main
DEADLINE=$(date -d "today 21:05" +%s)
B="venv/bin/python benchmarks/bench_quality.py"
for job in "7OK9 0.06 yes 1" "2XHE 0.06 yes 1" "3ENL 0.06 no 3"; do
  set -- $job
  for method in plain cwred; do
    [ "$(date +%s)" -lt "$DEADLINE" ] || { echo "deadline: stop before $1 $2 $method"; break 2; }
    $B --seeds $4 --structures $1 --snrs $2 --ctf $3 --methods $method
  done
done
$B --report
