#!/usr/bin/env python
"""Candidate filters of `lesiontrack detect` compared on real body photos outside the test split.

    experiments/choose_detection_filter.py DATASET [--splits train,val] [--synthesized 120]
        [--weights W] [--threshold T] [--out runs/filter]

Runs the shipped detector (or the weights W; skin mask as ``lesiontrack detect``, no filter:
``min_area=1``, ``min_score=0``, ``min_contrast=None``) on the body photos of the chosen splits of
DATASET (``splits.json``; iToBoS tiles with ``lesions.csv``), scores every detection as right,
neutral (on an ambiguous annotation) or false positive (:func:`lesiontrack.real_photos.score_photo`)
and writes ``detections.csv`` (one row per detection: photo, split, area, score, contrast,
outcome) and ``filters.md``: recall of clear lesions, precision and false positives per photo
for every minimum area, score and visible contrast (Delta E00). Real moles are pigmented;
the blended lesions of the synthesized val photos (mostly carcinomas and keratoses, often
pink and faint) are the check that a filter does not drop them: ``filters.md`` also gives the
share of those found that each pair of least score and contrast keeps
(``synthesized_lesions.csv``). The test split is never read, so the filter chosen here is
measured on it afterwards.
"""
import csv
import itertools
from pathlib import Path

import click
import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bodies" / "itobos"
AREAS = (16, 32, 64)
SCORES = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75)
CONTRASTS = (0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)


@click.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--photos", "folder", default=str(DATA), show_default=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--splits", default="train,val", show_default=True)
@click.option("--synthesized", default=120, show_default=True, type=click.IntRange(min=0),
              help="Also run on this many photos of DATASET's val split: the share of its "
                   "blended lesions found (centroid in the true box, at the least score 0) "
                   "that each least contrast keeps.")
@click.option("--weights", default="default", show_default=True,
              help="Detector weights (.keras) to choose the filters for.")
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0.05, 0.95),
              help="P(lesion) threshold of the proposals (lesiontrack detect --threshold).")
@click.option("--out", default="runs/filter", show_default=True, type=click.Path(path_type=Path))
def main(dataset, folder, splits, synthesized, weights, threshold, out):
    """Compare minimum-area, score and contrast filters on DATASET's non-test body photos."""
    from lesiontrack import metrics
    from lesiontrack.detection.detect import detect
    from lesiontrack.real_photos import (read_photo_truth, score_photo, split_body_photos,
                                         summarise_photos)
    from synth.io import read_image

    chosen = [s.strip() for s in splits.split(",") if s.strip()]
    if "test" in chosen:
        raise click.UsageError("the test split is for measuring the chosen filter, not choosing it")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    truths = {}
    detections = {}
    for split in chosen:
        for truth in read_photo_truth(folder, names=split_body_photos(dataset, split)):
            truths[truth.name] = truth
            lesions = detect(read_image(truth.image), weights=weights, threshold=threshold,
                             min_area=1, min_score=0.0, min_contrast=None, classifier=None)
            detections[truth.name] = lesions
            _, _, outcome = score_photo(truth, lesions)
            for lesion, result in zip(lesions, outcome):
                rows.append({"photo": truth.name, "split": split, "area": lesion["area_px"],
                             "score": round(float(lesion["score"]), 4),
                             "contrast": lesion["contrast"],
                             "outcome": {metrics.TRUE_DETECTION: "right",
                                         metrics.NEUTRAL_DETECTION: "neutral"}.get(int(result), "false")})
            click.echo(f"{truth.name} ({split}): {len(lesions)} detections", err=True)
    with open(out / "detections.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["photo"])
        writer.writeheader()
        writer.writerows(rows)

    lines = [f"# Detection filters on {len(truths)} body photos ({', '.join(chosen)}), "
             f"threshold {threshold:g}", "",
             "| min area px | min score | min contrast | recall clear | precision | FP/photo |",
             "|---|---|---|---|---|---|"]
    for area, score, contrast in itertools.product(AREAS, SCORES, CONTRASTS):
        total = summarise_photos([score_photo(truth, [
            d for d in detections[name] if d["area_px"] >= area and d["score"] >= score
            and (d["contrast"] is None or d["contrast"] >= contrast)])[0]
            for name, truth in truths.items()])
        counted = total["true_positives"] + total["false_positives"]
        lines.append(f"| {area} | {score:.2f} | {contrast:g} | {_cell(total['recall_clear'])} "
                     f"({total['clear_found']}/{total['clear']}) | {_cell(total['precision'])} "
                     f"({total['true_positives']}/{counted}) | {total['fp_per_photo']:.2f} |")
    if synthesized:
        lines += ["", *_synthesized_lesions(dataset, synthesized, out, weights, threshold)]
    (out / "filters.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


def _cell(value):
    return "nan" if value is None else f"{value:.3f}"


def _synthesized_lesions(dataset, limit, out, weights="default", threshold=0.5):
    """Lines of a table: share of the blended lesions found that each least score and contrast
    keeps (a lesion is kept while one of its detections passes both)."""
    from lesiontrack import metrics
    from lesiontrack.detection.detect import detect
    from lesiontrack.evaluate import read_detection_truth
    from synth.io import read_image

    found = []  # per blended lesion found: (score, contrast) of each detection on it
    items = read_detection_truth(dataset, split="val", limit=limit)
    for item in items:
        lesions = detect(read_image(item.image), weights=weights, threshold=threshold,
                         min_score=0.0, min_contrast=None, classifier=None)
        if not lesions or not len(item.boxes):
            continue
        inside = metrics.centroid_in_boxes([d["centroid"] for d in lesions], item.boxes)
        for column in range(inside.shape[1]):
            on = [(lesions[i]["score"], np.inf if lesions[i]["contrast"] is None
                   else lesions[i]["contrast"]) for i in np.flatnonzero(inside[:, column])]
            if on:
                found.append(on)
    with open(out / "synthesized_lesions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["lesion", "score", "contrast"])
        for index, on in enumerate(found):
            writer.writerows([index, score, contrast] for score, contrast in on)
    lines = [f"Share of the {len(found)} blended lesions of the first {len(items)} val photos "
             f"found at threshold {threshold:g} that each filter keeps:", "",
             "| min score | " + " | ".join(f"contrast >= {c:g}" for c in CONTRASTS) + " |",
             "|---|" + "---|" * len(CONTRASTS)]
    for score in SCORES:
        shares = [np.mean([any(s >= score and c >= contrast for s, c in on) for on in found])
                  if found else float("nan") for contrast in CONTRASTS]
        lines.append(f"| {score:.2f} | " + " | ".join(f"{v:.3f}" for v in shares) + " |")
    return lines


if __name__ == "__main__":
    main()
