#!/usr/bin/env python
"""Candidate filters of `lesiontrack detect` compared on real body photos outside the test split.

    experiments/choose_detection_filter.py DATASET [--splits train,val] [--out runs/filter]

Runs the shipped detector (skin mask and second stage as ``lesiontrack detect``) with the
smallest region kept (``min_area=1``) on the body photos of the chosen splits of DATASET
(``splits.json``; iToBoS tiles with ``lesions.csv``), scores every detection as right, neutral
(on an ambiguous annotation) or false positive (:func:`lesiontrack.real_photos.score_photo`)
and writes ``detections.csv`` (one row per detection: photo, split, area, score, outcome) and
``filters.md``: recall of clear lesions, precision and false positives per photo for every
minimum area, score and visible contrast (Delta E00). The test split is never read, so the filter chosen
here is measured on it afterwards.
"""
import csv
import itertools
from pathlib import Path

import click
import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bodies" / "itobos"
AREAS = (16, 32, 64)
SCORES = (0.5, 0.6, 0.65, 0.7, 0.75)
CONTRASTS = (0.0, 3.0, 4.0, 5.0, 6.0, 8.0)


@click.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--photos", "folder", default=str(DATA), show_default=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--splits", default="train,val", show_default=True)
@click.option("--out", default="runs/filter", show_default=True, type=click.Path(path_type=Path))
def main(dataset, folder, splits, out):
    """Compare minimum-area and minimum-score filters on DATASET's non-test body photos."""
    from lesiontrack import metrics
    from lesiontrack.detection.detect import detect
    from lesiontrack.real_photos import read_photo_truth, score_photo, split_body_photos
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
            lesions = detect(read_image(truth.image), min_area=1, classifier=None)
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

    lines = [f"# Detection filters on {len(truths)} body photos ({', '.join(chosen)})", "",
             "| min area px | min score | min contrast | recall clear | precision | FP/photo |",
             "|---|---|---|---|---|---|"]
    for area, score, contrast in itertools.product(AREAS, SCORES, CONTRASTS):
        found = clear = right = wrong = 0
        for name, truth in truths.items():
            kept = [d for d in detections[name] if d["area_px"] >= area and d["score"] >= score
                    and (d["contrast"] is None or d["contrast"] >= contrast)]
            row, _, _ = score_photo(truth, kept)
            found += row["clear_found"]
            clear += row["clear"]
            right += row["true_positives"]
            wrong += row["false_positives"]
        recall = found / clear if clear else float("nan")
        precision = right / (right + wrong) if right + wrong else float("nan")
        fps = wrong / len(truths)
        lines.append(f"| {area} | {score:.2f} | {contrast:.0f} | {recall:.3f} ({found}/{clear}) | "
                     f"{precision:.3f} ({right}/{right + wrong}) | {fps:.2f} |")
    (out / "filters.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
