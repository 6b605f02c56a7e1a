#!/bin/bash
# Session 19, second queue (replaces the rest of queue_session19.sh once its 7OK9 CTF 0.06
# CW-RED run ends): first the hook's new --lowpass-reference (RELION 5 Blush's "spectral
# trailing": each half's reference cut at the current resolution, data and prior alike) on
# 3ENL SNR 0.06 without CTF, seeds 1 and 2, where the shipped CW-RED claims 4 and 7 shells
# beyond the truth: does it remove the over-claim, and how much gain does it keep? Then the
# rest of queue_session19.sh (2XHE CTF 0.06, 3ENL 0.06 seed 3).
# Starts no new refinement after DEADLINE, so that the clean-clone CI runs on quiet cores.
cd /work/main
DEADLINE=$(date -d "today 21:05" +%s)
while pgrep -f "bench_quality.py --seeds 1 --structures 7OK9" >/dev/null; do sleep 30; done
B="venv/bin/python benchmarks/bench_quality.py"
for seed in 1 2; do
  [ "$(date +%s)" -lt "$DEADLINE" ] || { echo "deadline: stop before trail seed $seed"; exit 0; }
  $B --seeds $seed --structures 3ENL --snrs 0.06 --ctf no --methods cwred --lowpass-reference
done
for job in "3ENL 0.06 no 3" "2XHE 0.06 yes 1"; do
  set -- $job
  for method in plain cwred; do
    [ "$(date +%s)" -lt "$DEADLINE" ] || { echo "deadline: stop before $1 $2 $method"; break 2; }
    $B --seeds $4 --structures $1 --snrs $2 --ctf $3 --methods $method
  done
done
$B --report
