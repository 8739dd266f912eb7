#!/usr/bin/env bash
# Train the default detector weights shipped as lesiontrack/weights/detector.keras.
#
# Detector v2 (the shipped weights, when better on validation than v1):
# 1. the dataset runs/ds-v2 (command below): ISIC 2017 and PAD-UFES-20 lesions blended on
#    iToBoS body photos, the bodies' own annotated moles as label 3 (lesion of unknown
#    diagnosis), clothing and background as 0, hair augmentation, contrast-checked blends;
#    splits by patient and by body photo (splits.json);
# 2. hard negatives: false positives of the v1 detector on the TRAINING split's body photos,
#    away from every annotated lesion and found spot (experiments/hard_negatives.json);
# 3. train the FCN warm-started from the v1 weights (same layers), in float32 (mixed bfloat16
#    measured 5.4x slower per step on this 2-core AVX2 CPU, no native bfloat16), batch 8 on
#    256 px crops, hairy samples drawn up to 3x as often, 15 % of crops on hard negatives,
#    exposure / gamma / white-balance / JPEG / blur / scale augmentation; validation each
#    epoch on the first 48 photos of the val split, best checkpoint by lesion sensitivity at 1 false
#    positive per image, plus the recall of the clear real moles on the val body photos.
#    Resumable: rerun the same command to continue after an interruption (it reads
#    $RUN/detector.state.json and $RUN/detector.last.keras). To resume on a fresh machine from
#    the committed checkpoint: `experiments/train_detector.sh resume-setup` first.
# 4. the best checkpoint, its log and the resume checkpoint are copied into the repository
#    (`experiments/train_detector.sh publish`) only when the best beats the shipped weights on
#    the same validation figure (runs/detector-v2/baseline.json, measured on the v1 weights).
#
# Run from the repository root, with ../shared/data beside it.
set -euo pipefail
command -v lesiontrack >/dev/null || { echo "lesiontrack is not on PATH (activate its venv)" >&2; exit 1; }

DATA=../shared/data
DS=runs/ds-v2
CHECKPOINTS=experiments/checkpoints
VAL_LIMIT=${VAL_LIMIT:-48}
# Phase 1 (runs/detector-v2): from the v1 weights at 5e-4. Validation swung from epoch to
# epoch (sensitivity at 1 FP 0.35, 0.52, 0.41, 0.25 after epochs 1-4), so phase 2
# (runs/detector-v2-ft, `PHASE=2`) continues from phase 1's best epoch at 1e-4. Its first 3
# epochs ran at that constant step size (0.52, 0.55, 0.43); a 4th (the first of a cosine decay
# to 1e-5 at epoch 10, DECAY) gave 0.39, and it was stopped. In both phases the predicted
# lesion regions grew with training (on 12 val photos, the pixels at P(lesion) >= 0.5 were 3.4x
# the true lesion pixels for the shipped phase 1 epoch 2, 4.4x after phase 2's epoch 2, 8.2x
# after its epoch 4): the proposals swelled and merged. The cross-entropy's class weights
# (inverse square root of the label frequency: 15 / 10.6 / 34 for benign / malignant /
# unknown against 0.87) and crops centred on a lesion 60 % of the time both taught a lesion
# prior far above that of a whole photo. Phase 3 (runs/detector-v3, the default) continues
# from phase 2's best epoch without class weights and with 30 % of crops on a lesion, step
# size 1e-4 decaying on a cosine to 1e-5 over its 10 epochs. Chosen on the val split from
# 1-2 epoch trials from that same start (sensitivity at 1 FP after the first epoch): class
# weights at power 0.25, 0.58; power 0, 0.67; power 0 and no Dice term, 0.61; power 0 and
# 30 % lesion crops, 0.73; power 0 and 10 %, 0.70. Phase 3 ran on 2026-12-02 (best 0.738 after
# epoch 1) and is not published: on the train and val body photos it finds 25 of the 30 clear
# moles (the shipped weights 28), so `publish` was not run for it; its log and state are in
# experiments/checkpoints/detector-v3.*.
PHASE=${PHASE:-3}
LESION_BIAS=0.6; POWER=0.5
if [ "$PHASE" = 1 ]; then
    RUN=runs/detector-v2; START=experiments/checkpoints/detector-v1.keras; LR=5e-4; SEED=2; NAME=detector-v2
    DECAY=()
elif [ "$PHASE" = 2 ]; then
    RUN=runs/detector-v2-ft; START=runs/detector-v2/detector.keras; LR=1e-4; SEED=3; NAME=detector-v2-ft
    EPOCHS=${EPOCHS:-10}
    DECAY=(--lr-decay 3:10 --lr-final 1e-5)
else
    RUN=runs/detector-v3; START=experiments/checkpoints/detector-v2-ft-best.keras; LR=1e-4; SEED=6
    NAME=detector-v3; EPOCHS=${EPOCHS:-10}; LESION_BIAS=0.3; POWER=0
    DECAY=(--lr-decay 0:10 --lr-final 1e-5)
fi
EPOCHS=${EPOCHS:-400}

train() {
    mkdir -p "$RUN"
    if [ ! -f "$DS/dataset.json" ]; then
        synth make-dataset --lesions "$DATA/lesions/pad-ufes-20" --lesions "$DATA/lesions/isic2017:2" \
            --bodies "$DATA/bodies/itobos" --out "$DS" --count 2000 --pairs --workers 2 --seed 0
    fi
    if [ ! -f experiments/hard_negatives.json ]; then
        python experiments/mine_hard_negatives.py "$DS" --out experiments/hard_negatives.json \
            --weights experiments/checkpoints/detector-v1.keras
    fi
    if [ ! -f "$RUN/detector.state.json" ]; then
        INIT=(--init "$START")
    else
        INIT=()
    fi
    # 150 steps of batch 8 per epoch.
    nohup nice -n 5 lesiontrack -v train detector "$DS" --out "$RUN/detector.keras" "${INIT[@]}" \
        --epochs "$EPOCHS" --steps 150 --batch 8 --crop 256 --seed "$SEED" --lr "$LR" "${DECAY[@]}" \
        --val-limit "$VAL_LIMIT" \
        --hard-negatives experiments/hard_negatives.json --hard-negative-bias 0.15 \
        --hair-weight 2 --lesion-bias "$LESION_BIAS" --class-weight-power "$POWER" --monitor sens_1fp >> "$RUN/train.log" 2>&1 &
    echo "training in the background (pid $!), log $RUN/train.log"
}

baseline() {
    # Validation figures of the shipped v1 weights, computed by the training's own validation.
    python - "$DS" experiments/checkpoints/detector-v1.keras "$RUN/baseline.json" "$VAL_LIMIT" <<'EOF'
import sys
from lesiontrack.detection.data import split_records
from lesiontrack.detection.losses import segmentation_loss
from lesiontrack.detection.model import FCN, model_stride
from lesiontrack.detection.train import (_validation_bodies, detector_class_weights,
                                         evaluate_detector, real_lesion_recall)
from synth.io import write_json

dataset, weights, out, limit = sys.argv[1:]
model = FCN(weights=weights)
weights_by_label = detector_class_weights(dataset, split_records(dataset, "train"))
figures = evaluate_detector(model, dataset, split_records(dataset, "val"), stride=model_stride(model),
                            limit=int(limit), loss=lambda p, y: segmentation_loss(p, y, class_weights=weights_by_label))
bodies = _validation_bodies(dataset)
if bodies is not None:
    figures.update(real_lesion_recall(model, *bodies))
write_json(out, {"weights": weights, **figures})
print(figures)
EOF
}

publish() {
    # Copy the best checkpoint into the package when it beats the baseline, and the resume
    # checkpoint (model + optimizer state) with its state and log into experiments/checkpoints.
    python - "$RUN" "$NAME" <<'EOF'
import json, shutil, sys
from pathlib import Path
run, name = Path(sys.argv[1]), sys.argv[2]
state = json.loads((run / "detector.state.json").read_text())
baseline_file = run / "baseline.json"
if not baseline_file.is_file():  # a fresh checkout: the committed figures of the same command
    baseline_file = Path("experiments/checkpoints/detector-v1-val.json")
baseline = json.loads(baseline_file.read_text())
monitor = state["monitor"]
best, reference = state["best"], baseline[monitor]
earlier = Path("runs/detector-v2/detector.state.json")  # phase 2 must also beat phase 1
if not earlier.is_file():  # a fresh checkout: phase 1's committed state
    earlier = Path("experiments/checkpoints/detector-v2.state.json")
if run != Path("runs/detector-v2") and earlier.is_file():
    reference = max(reference, json.loads(earlier.read_text())["best"])
print(f"best {monitor} {best:.4f} (epoch {state['best_epoch']}) against the shipped {reference:.4f}")
if best > reference:
    shutil.copyfile(run / "detector.keras", "lesiontrack/weights/detector.keras")
    shutil.copyfile(run / "detector.csv", "lesiontrack/weights/detector.csv")
    print("copied to lesiontrack/weights/")
Path("experiments/checkpoints").mkdir(exist_ok=True)
shutil.copyfile(run / "detector.keras", f"experiments/checkpoints/{name}-best.keras")
shutil.copyfile(run / "detector.last.keras", f"experiments/checkpoints/{name}-last.keras")
shutil.copyfile(run / "detector.state.json", f"experiments/checkpoints/{name}.state.json")
shutil.copyfile(run / "detector.csv", f"experiments/checkpoints/{name}.csv")
EOF
}

resume_setup() {
    # A fresh checkout: put the committed resume checkpoint where the training expects it.
    mkdir -p "$RUN"
    cp "$CHECKPOINTS/$NAME-last.keras" "$RUN/detector.last.keras"
    cp "$CHECKPOINTS/$NAME.state.json" "$RUN/detector.state.json"
    cp "$CHECKPOINTS/$NAME.csv" "$RUN/detector.csv"
    if [ -f "$CHECKPOINTS/$NAME-best.keras" ]; then
        cp "$CHECKPOINTS/$NAME-best.keras" "$RUN/detector.keras"
    else
        cp lesiontrack/weights/detector.keras "$RUN/detector.keras"
    fi
}

case "${1:-train}" in
    train) train ;;
    baseline) baseline ;;
    publish) publish ;;
    resume-setup) resume_setup ;;
    *) echo "usage: $0 [train|baseline|publish|resume-setup]" >&2; exit 2 ;;
esac

# Detector v1 (the weights in experiments/checkpoints/detector-v1.keras, shipped before v2),
# made by:
#   synth make-dataset --lesions "$DATA/lesions/pad-ufes-20" --bodies "$DATA/bodies/itobos" \
#       --out runs/ds-real --count 1500 --pairs --workers 2 --seed 0
#   lesiontrack -v train detector runs/ds-real --out runs/detector/detector.keras \
#       --epochs 12 --steps 70 --batch 8 --crop 256 --seed 0 --lr 1e-3 --val-limit 48
#   lesiontrack -v train detector runs/ds-real --out runs/detector-ft/detector.keras \
#       --init runs/detector/detector.keras --epochs 6 --steps 70 --batch 8 --crop 256 --seed 1 \
#       --lr 2e-4 --val-limit 48
# (12 x 70 steps at 1e-3, then 6 x 70 at 2e-4 from the best epoch by validation mean IoU.)
