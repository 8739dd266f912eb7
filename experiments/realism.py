"""Realism check of blended lesions: do they look like the real moles on the body photos?

Crops a square of twice the lesion's size around every blended lesion of a dataset that is
taught as a lesion (label benign or malignant; blends labelled ignore as too faint are left
out) and around every real mole annotated ``lesion`` in the body library's ``lesions.csv``
(segmented as synth does, synth.skin.segment_lesion_in_box), all resized to the same size.
Then:

* a contact sheet: rows of blended crops above rows of real crops, at the same size;
* the cross-validated ROC AUC (stratified 5-fold, repeated over 3 seeds) of two simple
  classifiers told to separate blended from real crops, on colour and texture statistics of
  the crops (CIELAB mean, spread and 10/50/90th percentiles inside the central disc and in the
  surrounding ring, their difference, Laplacian and gradient energy): scikit-learn logistic
  regression on standardised features and histogram gradient boosting.  0.5 means the
  classifier cannot tell them apart; lower is more realistic.  Reported for all blended
  lesions and for the pigmented diagnoses alone (NEV, MEL, SEK: like for like with real moles).

The real crops come from the original tiles and the blended ones from augmented samples
(camera noise, blur, JPEG), so some separation comes from the augmentation itself; it is the
same for every dataset made by ``synth make-dataset``, so before/after comparisons are fair.

With ``--contrast-only`` it prints the Delta E00 distribution (synth.contrast) of the real
moles and, given ``--dataset``, of the blended lesions, and stops.

The sheet holds crops of real photos: it stays in runs/ and is never committed.

Usage::

    python experiments/realism.py --dataset runs/ds-v2 --bodies ../shared/data/bodies/itobos \\
        --out runs/realism-v2
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import cv2
import numpy as np

from synth import io
from synth.bodies import load_body, read_body_library
from synth.contrast import contrasts_of_instances

log = logging.getLogger("realism")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PIGMENTED = ("NEV", "MEL", "SEK")


def square_crop(image: np.ndarray, box, *, context: float = 2.0, size: int = 32,
                min_side: int = 12) -> np.ndarray:
    """A square of ``context`` times the box's longest side about its centre, resized.

    Parameters
    ----------
    image : ndarray
        uint8 (H, W, 3).
    box : [x, y, w, h]
    context : float
    size : int
        Output side (px).
    min_side : int
        Smallest square taken from the image (px).

    Returns
    -------
    ndarray
        uint8 (size, size, 3); pixels beyond the image border are reflected.
    """
    x, y, w, h = box
    cx, cy = x + w / 2.0, y + h / 2.0
    side = max(min_side, context * max(w, h))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    side = int(round(side))
    pad = side
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    patch = padded[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)


def crop_features(crop: np.ndarray) -> np.ndarray:
    """Colour and texture statistics of a lesion-centred crop: float64 (F,)."""
    size = crop.shape[0]
    lab = cv2.cvtColor(crop.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(xx - (size - 1) / 2, yy - (size - 1) / 2) / size
    inner, ring = radius <= 0.22, (radius >= 0.32) & (radius <= 0.5)
    features = []
    for region in (inner, ring):
        values = lab[region]
        features += list(values.mean(axis=0)) + list(values.std(axis=0))
        features += list(np.percentile(values, [10, 50, 90], axis=0).ravel())
    features += list(lab[inner].mean(axis=0) - lab[ring].mean(axis=0))
    lightness = lab[..., 0]
    laplacian = cv2.Laplacian(lightness, cv2.CV_32F)
    gx, gy = cv2.Sobel(lightness, cv2.CV_32F, 1, 0), cv2.Sobel(lightness, cv2.CV_32F, 0, 1)
    gradient = np.hypot(gx, gy)
    edge = (radius > 0.15) & (radius < 0.35)
    features += [float(np.abs(laplacian).mean()), float(gradient[edge].mean()),
                 float(gradient[inner].mean()), float(gradient[ring].mean())]
    return np.asarray(features, np.float64)


def real_crops(bodies: Path, *, size: int):
    """Crops and Delta E00 of the real moles annotated ``lesion`` in the body library."""
    library = read_body_library(bodies)
    crops, contrasts = [], []
    for record in library.records:
        body = load_body(record)
        values = contrasts_of_instances(body["image"], body["known"], exclude=~body["skin"])
        for index, info in enumerate(body["known_lesions"], start=1):
            region = body["known"] == index
            ys, xs = np.nonzero(region)
            box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            crops.append(square_crop(body["image"], box, size=size))
            contrasts.append(values[index])
    return crops, np.asarray(contrasts)


def blended_crops(dataset: Path, *, size: int, limit: int, seed: int):
    """Crops and Delta E00 of up to ``limit`` blended lesions taught as lesions."""
    records = io.read_manifest(dataset)
    candidates = [(r, l) for r in records for l in r["lesions"]
                  if l.get("bbox") and l.get("label") in (io.BENIGN, io.MALIGNANT)]
    order = np.random.default_rng(seed).permutation(len(candidates))[:limit]
    crops, contrasts, diagnoses = [], [], []
    cache = {}
    for k in sorted(order):
        record, lesion = candidates[k]
        if record["id"] not in cache:
            cache = {record["id"]: io.read_image(dataset / record["image"])}
        crops.append(square_crop(cache[record["id"]], lesion["bbox"], size=size))
        contrasts.append(lesion.get("contrast", np.nan) if lesion.get("contrast") is not None
                         else np.nan)
        diagnoses.append(lesion["diagnosis"])
    return crops, np.asarray(contrasts, float), diagnoses


def separation_auc(blended, real, *, seed: int = 0, repeats: int = 3) -> dict:
    """Cross-validated AUC of classifiers separating blended (1) from real (0) crops."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.stack([crop_features(c) for c in list(blended) + list(real)])
    target = np.r_[np.ones(len(blended)), np.zeros(len(real))]
    models = {
        "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=2000)),
        "gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=100, learning_rate=0.08,
                                                                    class_weight="balanced",
                                                                    random_state=0),
    }
    out = {}
    for name, build in models.items():
        scores = []
        for repeat in range(repeats):
            folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed + repeat)
            probability = cross_val_predict(build(), features, target, cv=folds,
                                            method="predict_proba")[:, 1]
            scores.append(roc_auc_score(target, probability))
        out[name] = {"auc": round(float(np.mean(scores)), 3), "std": round(float(np.std(scores)), 3)}
    return out


def sheet(blended, real, *, columns: int = 20, tile: int = 64) -> np.ndarray:
    """Blended crops (rows above) and real crops (rows below), with a gap between."""
    def grid(crops):
        crops = [cv2.resize(c, (tile, tile), interpolation=cv2.INTER_NEAREST) for c in crops]
        rows = []
        for start in range(0, len(crops), columns):
            row = crops[start:start + columns]
            row += [np.full((tile, tile, 3), 255, np.uint8)] * (columns - len(row))
            rows.append(np.concatenate(row, axis=1))
        return np.concatenate(rows, axis=0)

    gap = np.full((tile // 2, columns * tile, 3), 255, np.uint8)
    return np.concatenate([grid(blended), gap, grid(real)], axis=0)


def _summary(values):
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {}
    return {"count": int(values.size), "min": round(float(values.min()), 2),
            "p5": round(float(np.percentile(values, 5)), 2),
            "median": round(float(np.median(values)), 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, help="A synth make-dataset folder.")
    parser.add_argument("--bodies", type=Path, default=SHARED / "bodies" / "itobos",
                        help="Body library with lesions.csv (default ../shared/data/bodies/itobos).")
    parser.add_argument("--out", type=Path, help="Folder for sheet.png and realism.json.")
    parser.add_argument("--size", type=int, default=32, help="Crop side in px.")
    parser.add_argument("--limit", type=int, default=400, help="Blended lesions drawn at most.")
    parser.add_argument("--sheet-count", type=int, default=80, help="Blended crops on the sheet.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--contrast-only", action="store_true",
                        help="Only print the Delta E00 distributions.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    real, real_contrast = real_crops(args.bodies, size=args.size)
    report = {"real": {"lesions": len(real), "contrast": _summary(real_contrast)}}
    if args.dataset:
        blended, blended_contrast, diagnoses = blended_crops(args.dataset, size=args.size,
                                                             limit=args.limit, seed=args.seed)
        report["blended"] = {"dataset": str(args.dataset), "lesions": len(blended),
                             "contrast": _summary(blended_contrast),
                             "diagnoses": {d: diagnoses.count(d) for d in sorted(set(diagnoses))}}
    if args.contrast_only or not args.dataset:
        print(json.dumps(report, indent=1))
        return
    report["auc"] = separation_auc(blended, real, seed=args.seed)
    # Real moles are pigmented naevi, macules and angiomas: the pigmented diagnoses are the
    # like-for-like comparison (carcinomas and keratoses are pink and scaly by nature).
    pigmented = [c for c, d in zip(blended, diagnoses) if d in PIGMENTED]
    if len(pigmented) >= 10:
        report["auc_pigmented"] = separation_auc(pigmented, real, seed=args.seed)
        report["pigmented_lesions"] = len(pigmented)
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        io.write_image(args.out / "sheet.png", sheet(blended[:args.sheet_count], real))
        io.write_json(args.out / "realism.json", report)


if __name__ == "__main__":
    main()
