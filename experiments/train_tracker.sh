#!/usr/bin/env bash
# Train the default tracker weights shipped as lesiontrack/weights/tracker.keras.
#
# 1. synthesize a dataset with tracking pairs (t1 = viewpoint + non-rigid warp of t0, lesion
#    changes, exact flow) from PAD-UFES-20 lesions on iToBoS body photos;
# 2. train the siamese tracker ("costvolume" variant) with its shared trunk initialised from
#    the detector's conv section (resumable: rerun the same command to continue);
# 3. copy the best checkpoint (lowest validation EPE) into the package.
#
# Usage: experiments/train_tracker.sh [COUNT] [EPOCHS] [STEPS]   (run from the repository root)
# Throughput measured on 2 shared CPU cores (load 5-6 from other jobs) at crop 256, batch 8,
# conv1 frozen (the default with a detector --init): about 4 pairs/s, 2.0-2.7 s per step, so
# 10 x 50 steps take roughly 20-25 minutes plus about 10 s of validation per epoch. Adding
# --bf16 (mixed bfloat16; flows and cost volume stay float32) was about 1.3x faster.
# Pairs are resized by a random factor in [0.5, 1] before cropping (--min-scale), so the
# 30-70 px motion of 512 x 512 pairs fits in the 256 crops; predict_flow processes photos
# at a diagonal of at most 800 px, the scale the network is trained at.
# For the ablation against the paper's plain subtraction merge, add --variant subtract and
# another --out.
set -euo pipefail

COUNT=${1:-1000}
EPOCHS=${2:-10}
STEPS=${3:-50}
DATA=../shared/data
RUN=runs/tracker

if [ ! -f runs/ds-real/dataset.json ]; then
    synth make-dataset --lesions "$DATA/lesions/pad-ufes-20" --bodies "$DATA/bodies/itobos" \
        --out runs/ds-real --count "$COUNT" --pairs --seed 0
fi

INIT=()
for detector in runs/detector/detector.keras lesiontrack/weights/detector.keras; do
    if [ -f "$detector" ]; then INIT=(--init "$detector"); break; fi
done

mkdir -p "$RUN"
lesiontrack -v train tracker runs/ds-real "${INIT[@]}" --out "$RUN/tracker.keras" \
    --variant costvolume --epochs "$EPOCHS" --steps "$STEPS" --batch 8 --crop 256 \
    --min-scale 0.5 --seed 0 --lr 5e-4 --val-limit 32

mkdir -p lesiontrack/weights
cp "$RUN/tracker.keras" lesiontrack/weights/tracker.keras
cp "$RUN/tracker.csv" lesiontrack/weights/tracker.csv
echo "default weights: lesiontrack/weights/tracker.keras (log $RUN/tracker.csv, curves $RUN/tracker.png)"
