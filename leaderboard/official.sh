#!/usr/bin/env bash
# Recompute the official synthetic board from scratch on CPU (about 110 minutes on 2 idle cores, 35 of them
# for nice and atm, whose convolutional encoders are slow on CPU):
#   rm -rf leaderboard/results && bash leaderboard/official.sh
# The grid lives in sweeps/official-synthetic.yaml. Finished units are skipped, so an interrupted
# run continues where it stopped; `eegbench sweep status sweeps/official-synthetic.yaml` shows where.
set -euo pipefail
cd "$(dirname "$0")/.."
eegbench sweep run sweeps/official-synthetic.yaml > /dev/null
# what protocol choices do to scores (about 25 minutes): a pitfall record, never part of the main tables
[ -f leaderboard/results/_pitfalls/synthetic-intra/v1/shallow-efficientnet_lite0.json ] ||
  eegbench pitfalls --method shallow --task synthetic-intra --results-dir leaderboard/results > /dev/null
eegbench leaderboard --results-dir leaderboard/results --out leaderboard --site leaderboard/site
