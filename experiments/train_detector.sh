#!/usr/bin/env bash
# Train the default detector weights shipped as lesiontrack/weights/detector.keras.
#
# 1. synthesize a detection dataset from PAD-UFES-20 lesions on iToBoS body photos;
# 2. train the FCN (resumable: rerun the same command to continue after an interruption);
# 3. copy the best checkpoint into the package.
#
# Usage: experiments/train_detector.sh [COUNT] [EPOCHS] [STEPS]   (run from the repository root)
# About 20 minutes of training on 2 CPU cores is roughly 700-900 steps of batch 8 at 256x256.
set -euo pipefail

COUNT=${1:-1000}
EPOCHS=${2:-8}
STEPS=${3:-100}
DATA=../shared/data
RUN=runs/detector

if [ ! -f runs/det-ds/dataset.json ]; then
    synth make-dataset --lesions "$DATA/lesions/pad-ufes-20" --bodies "$DATA/bodies/itobos" \
        --out runs/det-ds --count "$COUNT" --seed 0
fi

mkdir -p "$RUN"
lesiontrack -v train detector runs/det-ds --out "$RUN/detector.keras" \
    --epochs "$EPOCHS" --steps "$STEPS" --batch 8 --crop 256 --seed 0 --lr 1e-3

mkdir -p lesiontrack/weights
cp "$RUN/detector.keras" lesiontrack/weights/detector.keras
cp "$RUN/detector.csv" lesiontrack/weights/detector.csv
echo "default weights: lesiontrack/weights/detector.keras (log $RUN/detector.csv, curves $RUN/detector.png)"
