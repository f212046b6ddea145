#!/usr/bin/env bash
# Recompute the official synthetic board from scratch on CPU (about 20 minutes on 2 idle cores):
#   rm -rf leaderboard/results && bash leaderboard/official.sh
# Finished units are skipped, so an interrupted run continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
run() { eegbench run --device cpu --results-dir leaderboard/results "$@" > /dev/null; }

for method in final shallow multi ridge; do
  run --task synthetic-intra --method "$method" --seeds 0,1,2
done
for layer in stem blocks.1 blocks.3 blocks.5; do
  run --task synthetic-intra --method shallow --layer "$layer" --seeds 0
done
for method in final shallow; do
  run --task synthetic-inter --method "$method"
done
eegbench leaderboard --results-dir leaderboard/results --out leaderboard
