#!/usr/bin/env python
"""How many real moles does the detector find on real body photos?

Runs the detector on every iToBoS tile (real skin with real moles, never blended) and checks
the hand-picked lesions of ``lesions.csv``: a clear lesion (label ``lesion``) is found when a
detected lesion's box contains its centre or a detection's centroid lies within its radius + 4
px. Reports recall of clear and of ambiguous lesions, detections per tile, and model seconds
per tile; writes an overlay PNG per tile and ``real_moles.json``. Unlabelled freckles are not
negatives, so there is no precision figure.

    python experiments/real_moles.py --out runs/real-moles [--weights W] [--threshold T]
"""
import csv
import json
import time
from pathlib import Path

import click
import numpy as np

from synth.io import list_images, read_image, write_image, write_json

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bodies" / "itobos"


def _found(lesion, detections):
    x, y, radius = lesion
    for d in detections:
        bx, by, bw, bh = d["bbox"]
        cx, cy = d["centroid"]
        if bx <= x <= bx + bw and by <= y <= by + bh:
            return True
        if np.hypot(cx - x, cy - y) <= radius + 4:
            return True
    return False


@click.command()
@click.option("--bodies", type=click.Path(exists=True, file_okay=False), default=str(DATA),
              show_default=True, help="Folder of body photos with lesions.csv.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--weights", default="default", show_default=True)
@click.option("--threshold", default=0.5, show_default=True)
def main(bodies, out, weights, threshold):
    """Recall of real moles on real body photos, with overlays."""
    from lesiontrack.detection.detect import detect, draw_overlay, load_detector

    bodies, out = Path(bodies), Path(out)
    truth = {}
    with open(bodies / "lesions.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            truth.setdefault(row["tile"], []).append(
                (float(row["x"]), float(row["y"]), float(row["radius_px"]), row["label"]))
    model = load_detector(weights)
    found = {"lesion": [0, 0], "ambiguous": [0, 0]}
    tiles = {}
    for path in list_images(bodies):
        image = read_image(path)
        start = time.perf_counter()
        lesions = detect(image, model=model, threshold=threshold)
        seconds = time.perf_counter() - start
        hits = []
        for x, y, radius, label in truth.get(path.stem, []):
            hit = _found((x, y, radius), lesions)
            found[label][0] += hit
            found[label][1] += 1
            hits.append({"x": x, "y": y, "label": label, "found": hit})
        tiles[path.stem] = {"detections": len(lesions), "seconds": round(seconds, 3),
                            "truth": hits}
        write_image(out / f"{path.stem}_overlay.png", draw_overlay(image, lesions))
    result = {
        "weights": str(weights), "threshold": threshold,
        "recall_clear": found["lesion"][0] / max(found["lesion"][1], 1),
        "clear": found["lesion"], "recall_ambiguous": found["ambiguous"][0] / max(found["ambiguous"][1], 1),
        "ambiguous": found["ambiguous"],
        "detections_per_tile": float(np.mean([t["detections"] for t in tiles.values()])),
        "median_seconds_per_tile": float(np.median([t["seconds"] for t in tiles.values()])),
        "tiles": tiles}
    write_json(out / "real_moles.json", result)
    click.echo(f"clear lesions found: {found['lesion'][0]}/{found['lesion'][1]}, ambiguous: "
               f"{found['ambiguous'][0]}/{found['ambiguous'][1]}, "
               f"{result['detections_per_tile']:.1f} detections per tile, "
               f"{result['median_seconds_per_tile']:.2f} s per tile")


if __name__ == "__main__":
    main()
