#!/usr/bin/env bash
# Every figure of README.rst's detection tables for the shipped detector, in one run:
#
# 1. the synthesized test split of runs/ds-v2 (experiments/make_dataset.sh): FCN with the
#    second-stage classifier, the colour-statistics classifier and the sliding-window baseline
#    on the same photos (FROC, COCO AP, malignancy AUC of every scorer on the lesions all found,
#    per Fitzpatrick group);
# 2. the same test split re-made with skin of types V-VI (runs/ds-v2-dark);
# 3. the real body photos of the test split (lesions.csv: recall, precision, false positives);
# 4. stability under exposure, JPEG and scale changes on those photos;
# 5. speed of `lesiontrack detect` on a 1094x894 photo, with and without the second stage.
#
# The references are trained on the train split of runs/ds-v2 first (the sliding window on
# its first $BASELINE_LIMIT training photos: 0.2-0.5 photo/s here). LIMIT, when set, evaluates
# the first LIMIT test photos of runs/ds-v2; the dark split is evaluated on its first
# $DARK_LIMIT photos (150 of 310 by default). Run from the repository root.
set -euo pipefail

DATA=../shared/data
DS=runs/ds-v2
DARK=runs/ds-v2-dark
OUT=${OUT:-runs/eval-v2}
BASELINE_LIMIT=${BASELINE_LIMIT:-500}
DARK_LIMIT=${DARK_LIMIT:-150}
LIMIT_ARGS=()
if [ -n "${LIMIT:-}" ]; then LIMIT_ARGS=(--limit "$LIMIT"); fi

mkdir -p "$OUT" runs/baseline-v2 runs/classifier
if [ ! -f runs/baseline-v2/baseline.npz ]; then
    lesiontrack train baseline "$DS" --out runs/baseline-v2/baseline.npz --seed 0 --limit "$BASELINE_LIMIT"
fi
if [ ! -f runs/classifier/colour_stats.pkl ]; then
    lesiontrack train colour-stats "$DS" --out runs/classifier/colour_stats.pkl
fi
lesiontrack evaluate detection "$DATA/bodies/itobos" --bodies-of "$DS" --split test \
    --out "$OUT/real-test"
bin/detect-stability --bodies-of "$DS" --split test --out "$OUT/stability"
lesiontrack evaluate detection "$DS" --split test "${LIMIT_ARGS[@]}" \
    --colour-stats runs/classifier/colour_stats.pkl --baseline runs/baseline-v2/baseline.npz \
    --out "$OUT/test"
lesiontrack evaluate detection "$DARK" --split test --limit "$DARK_LIMIT" \
    --colour-stats runs/classifier/colour_stats.pkl --out "$OUT/test-dark"
bin/detect-benchmark --repeats 5 | tee "$OUT/benchmark.txt"
