#!/bin/bash
# Session 18: what session 17 left of its queue (CTF SNR 0.015 on 2XHE), then SNR 0.08 without
# CTF on 3ENL: plain RELION there should end between its 8.0 A at 0.06 and 4.27 A at 0.1,
# where CW-RED ends at 0.06 and over-claims 4-7 shells. Does plain RELION over-claim as much
# when it ends at that resolution (as it does on 7OK9 at SNR 0.1: 5.82 A, 5 shells)? Then
# CTF SNR 0.06 for 7OK9 and 2XHE. Finished runs are cached, so they are skipped.
# Starts no new refinement after DEADLINE, so that the clean-clone CI runs on quiet cores.
cd /work/main
DEADLINE=$(date -d "today 18:25" +%s)
# the first start of this queue was stopped during 2XHE 0.015 plain: wait for that run
while pgrep -f "bench_quality.py --seeds 1 --ctf yes --structures 2XHE --snrs 0.015" >/dev/null
do sleep 30; done
B="venv/bin/python benchmarks/bench_quality.py --seeds 1"
for job in "2XHE 0.015 yes" "3ENL 0.08 no" "7OK9 0.06 yes" "2XHE 0.06 yes"; do
  set -- $job
  for method in plain cwred; do
    [ "$(date +%s)" -lt "$DEADLINE" ] || { echo "deadline: stop before $1 $2 $method"; break 2; }
    $B --structures $1 --snrs $2 --ctf $3 --methods $method
  done
done
venv/bin/python benchmarks/bench_quality.py --report
