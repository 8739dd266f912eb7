#!/usr/bin/env bash
# Train the default detector weights shipped as lesiontrack/weights/detector.keras.
#
# 1. synthesize a dataset (with tracking pairs, shared with the tracker) from PAD-UFES-20
#    lesions on iToBoS body photos; splits by patient and by body photo;
# 2. train the FCN (resumable: rerun the same command to continue after an interruption);
# 3. copy the best checkpoint and its log into the package.
#
# Run from the repository root, with ../shared/data beside it. On 2 CPU cores: about 15 min of
# synthesis with 2 workers and about 30 min of training.
set -euo pipefail

DATA=../shared/data
DS=runs/ds-real
RUN=runs/detector

if [ ! -f "$DS/annotations.json" ]; then
    synth make-dataset --lesions "$DATA/lesions/pad-ufes-20" --bodies "$DATA/bodies/itobos" \
        --out "$DS" --count 1500 --pairs --workers 2 --seed 0
fi

mkdir -p "$RUN" "$RUN-ft"
# Phase 1: 12 x 70 steps at a step size of 1e-3. Validation on full photos swings from epoch
# to epoch at this step size (batch-norm statistics of 256 px lesion-rich crops against whole
# photos), so the best epoch is kept and ...
lesiontrack -v train detector "$DS" --out "$RUN/detector.keras" \
    --epochs 12 --steps 70 --batch 8 --crop 256 --seed 0 --lr 1e-3 --val-limit 48
# ... phase 2 fine-tunes it for 6 x 70 steps at 2e-4.
lesiontrack -v train detector "$DS" --out "$RUN-ft/detector.keras" --init "$RUN/detector.keras" \
    --epochs 6 --steps 70 --batch 8 --crop 256 --seed 1 --lr 2e-4 --val-limit 48

mkdir -p lesiontrack/weights
cp "$RUN-ft/detector.keras" lesiontrack/weights/detector.keras
cat "$RUN/detector.csv" > lesiontrack/weights/detector.csv
tail -n +2 "$RUN-ft/detector.csv" >> lesiontrack/weights/detector.csv
echo "default weights: lesiontrack/weights/detector.keras (logs $RUN/ and $RUN-ft/)"
