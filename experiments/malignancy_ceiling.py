"""How much of the malignancy signal of the lesion photos survives synthesis?

For every blended lesion of a dataset's train and test splits (the manifest names its source
photo, its size on the body and the colour augmentation drawn for it), the same colour
statistics (lesiontrack.baselines.colour_stats: Lab/HSV mean, spread, percentiles and Laplacian
energy over the lesion's own pixels, its mask box resized to 24 px, the pixels outside the mask
filled with the lesion's mean colour) are measured at each step of the synthesis:

1. ``source``: the lesion photo as it is in the library;
2. ``at body size``: the photo resized so the lesion has the diameter it was given on the body
   (``diameter_px``), as synth.compose.prepare_lesion resizes it;
3. ``+ colour augmentation``: step 2 with the hue, saturation, brightness and contrast change
   recorded for that lesion (synth.augment);
4. ``+ tone match``: step 3 carried towards the body's skin by the per-channel ratio of that
   skin (the median of a ring around the lesion in the synthesized photo) to the lesion's rim,
   raised to the tone-match strength of the blend attempt kept for it
   (synth.blend.prepare_lesion_source, synth.compose.BLEND_ATTEMPTS);
5. ``+ optical blur``: step 4 blurred by the lesion's recorded optical blur;
6. ``blended``: the lesion's pixels (its instance mask) in the synthesized photo: all of the
   above, Poisson blended, then the photo's photometric change, noise and JPEG;
7. ``blended, box with context``: the reference of the README (colour_stats.lesion_features
   on the box with its surrounding skin).

A gradient-boosted classifier is fitted per step on the train split's lesions and scored (ROC
AUC, malignant against benign) on the test split's lesions: patients and body photos never seen
in training. The drop from one step to the next is what that step costs the malignancy signal.

Usage::

    python experiments/malignancy_ceiling.py runs/ds-v2 --out runs/malignancy-ceiling
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from lesiontrack.baselines.colour_stats import (SIZE, colour_features, fit_colour_stats,
                                                lesion_features)
from synth.augment import _apply_colour
from synth.blend import lesion_rim, tone_ratio
from synth.compose import BLEND_ATTEMPTS, resize_to_diameter
from synth.io import read_image, read_json, read_manifest
from synth.sources import LesionSource

STEPS = ("source", "at body size", "+ colour augmentation", "+ tone match", "+ optical blur",
         "blended", "blended, box with context")


def masked_features(image, mask, size=SIZE):
    """Colour statistics of the lesion pixels of ``image`` (its mask box, resized to ``size``)."""
    ys, xs = np.nonzero(mask)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    crop = cv2.resize(image[box], (size, size), interpolation=cv2.INTER_AREA)
    inside = cv2.resize(mask[box].astype(np.uint8), (size, size),
                        interpolation=cv2.INTER_NEAREST) > 0
    if not inside.any():
        inside[size // 2, size // 2] = True
    fill = crop[inside].mean(axis=0)
    crop = np.where(inside[..., None], crop, np.rint(fill)).astype(np.uint8)
    return colour_features(crop)


def tone_match(crop, mask, photo, region, strength):
    """``crop`` carried towards the skin around ``region`` of ``photo`` as the blend does."""
    if strength <= 0:
        return crop
    grown = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=4) > 0
    ratio = tone_ratio(photo[grown & ~region], crop[lesion_rim(mask)], strength)
    return np.clip(np.rint(crop * ratio), 0, 255).astype(np.uint8)


def lesion_rows(root, split, limit):
    """Features of every step for the blended lesions of a split: dict step -> (N, 31), labels."""
    libraries = read_json(Path(root) / "dataset.json")["sources"]["lesion_libraries"]
    lesions = LesionSource([entry["folder"] for entry in libraries], check=False)
    index = {meta["source"]: i for i, meta in enumerate(lesions.records)}
    rows = {step: [] for step in STEPS}
    labels = []
    records = [r for r in read_manifest(root) if r.get("split") == split][:limit]
    for number, record in enumerate(records, 1):
        image = read_image(root / record["image"])
        instances = cv2.imread(str(root / record["instances"]), cv2.IMREAD_UNCHANGED)
        for lesion in record["lesions"]:
            if lesion.get("label") not in (1, 2) or not lesion.get("bbox"):
                continue
            region = instances == lesion["instance"]
            if region.sum() < 4:
                continue
            photo, mask = lesions.load(index[lesion["source"]])   # as synth loads it
            small, small_mask = resize_to_diameter(photo, mask, lesion["diameter_px"])
            coloured = _apply_colour(small, lesion["augment"], region=small_mask)
            rows["source"].append(masked_features(photo, mask))
            rows["at body size"].append(masked_features(small, small_mask))
            rows["+ colour augmentation"].append(masked_features(coloured, small_mask))
            toned = tone_match(coloured, small_mask, image, region,
                               BLEND_ATTEMPTS[lesion.get("blend_attempt") or 0]["tone_match"])
            sigma = lesion["augment"].get("blur_sigma", 0.0)
            blurred = cv2.GaussianBlur(toned, (0, 0), sigma) if sigma > 0 else toned
            rows["+ tone match"].append(masked_features(toned, small_mask))
            rows["+ optical blur"].append(masked_features(blurred, small_mask))
            rows["blended"].append(masked_features(image, region))
            rows["blended, box with context"].append(lesion_features(image, [lesion["bbox"]])[0])
            labels.append(bool(lesion["malignant"]))
        if number % 100 == 0:
            print(f"{split}: {number}/{len(records)} photos, {len(labels)} lesions", flush=True)
    return {step: np.stack(values) for step, values in rows.items()}, np.asarray(labels)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="Photos per split.")
    args = parser.parse_args(argv)
    train, train_labels = lesion_rows(args.dataset, "train", args.limit)
    test, test_labels = lesion_rows(args.dataset, "test", args.limit)
    table = {}
    for step in STEPS:
        model = fit_colour_stats(train[step], train_labels, seed=0)
        table[step] = round(float(roc_auc_score(test_labels, model.predict(test[step]))), 3)
        print(f"{step:28s} AUC {table[step]:.3f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"dataset": str(args.dataset), "train_lesions": int(len(train_labels)),
               "test_lesions": int(len(test_labels)),
               "test_malignant": int(test_labels.sum()), "auc": table}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
