#!/usr/bin/env python
"""Where the wrong end-to-end matches of `lesiontrack match` come from, with the true flow.

    experiments/match_errors.py DATASET [--split val] [--limit 20] [--split-depths 0.1,0.3,1.0]

On the synthesized pairs of a split, the shipped detector runs on both visits (its defaults;
``split_depth`` of the proposals as given) and the lesions are matched with the pairs' own
true flow, so every wrong match is the detector's or the assignment's, never the flow's. Per
split depth it prints the end-to-end counts and precision
(:func:`lesiontrack.tracking.evaluate.end_to_end_counts`) and sorts the wrong matches by kind:
a lesion's detection matched to a detection whose centroid lies in the same lesion's box but
that the evaluation does not count as that lesion's (a fragment of a lesion split in two), to
a detection in another lesion's box, or to one outside every lesion's box.
"""
import collections

import click
import numpy as np


def _box_lesions(detections, instances):
    """Detection id -> id of the one true lesion whose box holds its centroid (0: none, -1: several)."""
    from lesiontrack import metrics
    from lesiontrack.tracking.pairs import lesions_from_instances

    truth = lesions_from_instances(instances)
    if not detections or not truth:
        return {d["id"]: 0 for d in detections}
    inside = metrics.centroid_in_boxes([d["centroid"] for d in detections],
                                       [t["bbox"] for t in truth])
    out = {}
    for detection, row in zip(detections, inside):
        hits = np.flatnonzero(row)
        out[detection["id"]] = truth[hits[0]]["id"] if len(hits) == 1 else (0 if not len(hits) else -1)
    return out


@click.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--split", default="val", show_default=True)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--split-depths", default="0.1", show_default=True,
              help="Comma-separated watershed split depths of the proposals to compare.")
def main(dataset, split, limit, split_depths):
    """Sort the wrong end-to-end matches of DATASET's pairs (true flow) by kind."""
    from lesiontrack.detection.detect import detect, load_detector
    from lesiontrack.tracking.evaluate import end_to_end_counts, lesion_identities
    from lesiontrack.tracking.match import match_lesions
    from lesiontrack.tracking.pairs import both_visits, synthesized_pairs

    model = load_detector("default")
    pairs = synthesized_pairs(dataset, split=split, limit=limit, rng=np.random.default_rng(0))
    for depth in (float(v) for v in split_depths.split(",")):
        totals, kinds = collections.Counter(), collections.Counter()
        for pair in pairs:
            found = [detect(image, model=model, classifier=None, split_depth=depth)
                     for image in (pair.image0, pair.image1)]
            identity = [lesion_identities(found[0], pair.instances0),
                        lesion_identities(found[1], pair.instances1)]
            boxes = [_box_lesions(found[0], pair.instances0), _box_lesions(found[1], pair.instances1)]
            common = both_visits(pair)
            result = match_lesions(pair.image0, pair.image1, flow=pair.flow, lesions0=found[0],
                                   lesions1=found[1])
            totals.update(end_to_end_counts(result["matches"], *identity, common))
            detected = (set(identity[0].values()) & set(identity[1].values()) & common) - {0}
            for match in result["matches"]:
                lesion0, lesion1 = identity[0].get(match["id0"], 0), identity[1].get(match["id1"], 0)
                if (lesion0 in detected or lesion1 in detected) and lesion0 != lesion1:
                    box0, box1 = boxes[0][match["id0"]], boxes[1][match["id1"]]
                    if box0 == box1 and box0 > 0:
                        kinds["fragments of one lesion"] += 1
                    elif box0 > 0 and box1 > 0:
                        kinds["two different lesions"] += 1
                    else:
                        kinds["a detection outside every lesion's box"] += 1
        precision = totals["right"] / totals["matches"] if totals["matches"] else float("nan")
        click.echo(f"split depth {depth:g}: {dict(totals)}; precision {precision:.3f}; "
                   f"wrong matches: {dict(kinds)}")


if __name__ == "__main__":
    main()
