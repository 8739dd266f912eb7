#!/usr/bin/env bash
# Train the second-stage malignancy classifier shipped as lesiontrack/weights/classifier.keras
# and measure it against the FCN's malignant channel, the sliding-window baseline and the
# colour-statistics classifier on the same test lesions.
#
# 1. the classifier: 32 px crops of twice the lesion's size, from the blended lesions of the
#    train split of runs/ds-v2 (experiments/make_dataset.sh) plus the PAD-UFES-20 and ISIC 2017
#    photos of the train split's patients composited onto skin of the training body photos at
#    0.4 mm/px (3 crops each), flips/rotations/zoom/shift/colour/exposure/blur/noise/JPEG
#    augmentation, class-balanced loss, 20 epochs, best epoch by validation AUC; the lesion's
#    colour statistics (those of the colour-statistics classifier) join the CNN's features;
# 2. the references, trained on the same train split: the colour-statistics classifier and the
#    sliding-window baseline;
# 3. `lesiontrack evaluate detection` on the test split with everything in one run.
#
# Run from the repository root, with ../shared/data beside it. `publish` copies the trained
# classifier into lesiontrack/weights/; `train-only` stops after step 1.
set -euo pipefail

DATA=../shared/data
DS=${DS:-runs/ds-v2}
RUN=${RUN:-runs/classifier/v2-32c}

if [[ "${1:-}" == "publish" ]]; then
    cp "$RUN/classifier.keras" lesiontrack/weights/classifier.keras
    cp "$RUN/classifier.csv" lesiontrack/weights/classifier.csv
    exit 0
fi

mkdir -p "$RUN" runs/baseline-v2
lesiontrack -v train classifier "$DS" --out "$RUN/classifier.keras" --size 32 --epochs 20 --colour-inputs \
    --library "$DATA/lesions/pad-ufes-20" --library "$DATA/lesions/isic2017" 2>&1 | tee -a "$RUN/train.log"
[[ "${1:-}" == "train-only" ]] && exit 0
lesiontrack train colour-stats "$DS" --out runs/classifier/colour_stats.pkl
lesiontrack train baseline "$DS" --out runs/baseline-v2/baseline.npz --seed 0
lesiontrack evaluate detection "$DS" --split test --classifier "$RUN/classifier.keras" \
    --colour-stats runs/classifier/colour_stats.pkl --baseline runs/baseline-v2/baseline.npz \
    --out runs/eval-classifier
