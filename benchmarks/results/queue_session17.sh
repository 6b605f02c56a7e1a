#!/bin/bash
# Session 17: the CTF ladder's lowest level (SNR 0.015, where plain RELION should end near
# 10 A) on the three reserved structures, then CTF SNR 0.06 for 7OK9 and 2XHE (3ENL has it).
# Starts no new refinement after DEADLINE, so that the clean-clone CI runs on quiet cores.
cd /work/main
DEADLINE=$(date -d "today 14:25" +%s)
B="venv/bin/python benchmarks/bench_quality.py --seeds 1 --ctf yes"
for job in "3ENL 0.015" "7OK9 0.015" "2XHE 0.015" "7OK9 0.06" "2XHE 0.06"; do
  set -- $job
  for method in plain cwred; do
    [ "$(date +%s)" -lt "$DEADLINE" ] || { echo "deadline: stop before $1 $2 $method"; break 2; }
    $B --structures $1 --snrs $2 --methods $method
  done
done
venv/bin/python benchmarks/bench_quality.py --report
