#!/usr/bin/env python
"""Hard negatives for detector training: false positives of a detector on real body photos.

Runs the detector on the body photos of a dataset's TRAINING split only (the split of every
body photo is read from the dataset's ``splits.json``; validation and test photos are never
opened) and keeps the detections that lie away from every known lesion: the boxes of the
body library (``lesions.csv``, COCO or YOLO, every label, ambiguous included) and the spots
that blob detection finds (:func:`synth.skin.find_lesion_spots`), each grown by ``--margin``
pixels. What is left is hair crossings, skin texture, creases, clothing and background that
the detector takes for lesions (it is run on every pixel, without the skin mask of
``lesiontrack detect``). The result is a small JSON of derived coordinates, no image
data::

    {"detector": {...}, "threshold": T, "margin": M, "dataset": ..., "bodies": {
        "image_0240": {"boxes": [[x, y, w, h], ...], "scores": [...]} , ...}}

The detector training reads it (``--hard-negatives FILE``) and biases crops towards these
boxes on the samples cut from those photos.

    python experiments/mine_hard_negatives.py runs/ds-v2 --out experiments/hard_negatives.json
"""
import logging
from pathlib import Path

import click
import numpy as np

from synth.io import InputError, read_json, write_json

log = logging.getLogger("mine_hard_negatives")


def far_from_known(box, known, *, margin):
    """True when the box [x, y, w, h] grown by ``margin`` overlaps no known box (K, 4)."""
    if len(known) == 0:
        return True
    x, y, w, h = box
    known = np.asarray(known, np.float64).reshape(-1, 4)
    overlap_x = (known[:, 0] < x + w + margin) & (known[:, 0] + known[:, 2] > x - margin)
    overlap_y = (known[:, 1] < y + h + margin) & (known[:, 1] + known[:, 3] > y - margin)
    return not bool((overlap_x & overlap_y).any())


@click.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--bodies", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Body library; default: the one recorded in the dataset's dataset.json.")
@click.option("--weights", default="default", show_default=True)
@click.option("--threshold", default=0.3, show_default=True,
              help="P(lesion) threshold of the proposals (below the default 0.5 to catch near misses).")
@click.option("--margin", default=8.0, show_default=True,
              help="Pixels kept free around every known lesion box and spot.")
def main(dataset, out, bodies, weights, threshold, margin):
    """Mine false positives of a detector on the training split's real body photos."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from lesiontrack.detection.detect import detect, load_detector
    from lesiontrack.model_cache import resolve_weights
    from synth.bodies import load_body, read_body_library

    splits = read_json(dataset / "splits.json")
    info = read_json(dataset / "dataset.json")
    if bodies is None:
        bodies = Path(info.get("sources", {}).get("bodies") or "")
        if not bodies.is_dir():
            raise InputError(f"{dataset}/dataset.json: no body library recorded; pass --bodies")
    train_bodies = {name for name, split in splits.get("bodies", {}).items() if split == "train"}
    if not train_bodies:
        raise InputError(f"{dataset}/splits.json: no body photo in the train split")
    library = read_body_library(bodies)
    model = load_detector(weights)
    result = {}
    for record in library.records:
        if record.name not in train_bodies:
            continue
        body = load_body(record)
        spots = np.asarray(body["spots"], np.float64).reshape(-1, 3)
        known = [list(b) for b in record.boxes]
        known += [[x - r, y - r, 2 * r, 2 * r] for x, y, r in spots]
        # Every pixel, not only skin: the detector's hits on clothing, edges and padding are
        # negatives to learn as much as those on skin.
        lesions = detect(body["image"], model=model, threshold=threshold, skin=None,
                         classifier=None)
        kept = [l for l in lesions if far_from_known(l["bbox"], known, margin=margin)]
        result[record.name] = {"boxes": [l["bbox"] for l in kept],
                               "scores": [l["score"] for l in kept]}
        log.info("%s: %d detections, %d away from %d known lesions and spots", record.name,
                 len(lesions), len(kept), len(known))
    write_json(out, {
        "detector": {"weights": str(resolve_weights(weights, "detector"))}, "threshold": threshold,
        "margin": margin, "dataset": str(dataset), "split": "train", "bodies": result})
    click.echo(f"{out}: {sum(len(v['boxes']) for v in result.values())} hard negatives on "
               f"{len(result)} training body photos")


if __name__ == "__main__":
    main()
