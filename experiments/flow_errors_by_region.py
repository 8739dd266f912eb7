#!/usr/bin/env python
"""Where a tracker's flow is wrong: PCK on the skin and on the rest of the photos.

    experiments/flow_errors_by_region.py DATASET [--split val] [--limit 24] [--method net]
        [--weights W] [--max-diagonal auto] [--sheet errors.png]

On the stored pairs of a split, the flow of a method
(``lesiontrack.tracking.flow.estimate_flow``; ``net`` at its working diagonal) is compared with
the pairs' true flow at every valid pixel, as the training's validation does,
and the pixels are split by the skin segmentation of the t0 photo
(:func:`synth.skin.segment_skin`, the mask ``synth`` places lesions with): skin, and the rest
(background, clothing, padding), which the synthesized visit change moves with the body as if
it were painted on it. Prints the pooled PCK at alpha 0.01 / 0.02 / 0.05 / 0.1 of the image
diagonal for each region and its share of the valid pixels; ``--sheet`` writes, for the first 8
pairs, t0, t1 and the error map (blue 0 to red >= 0.05 of the diagonal, black invalid).
"""
import math

import click
import numpy as np

ALPHAS = (0.01, 0.02, 0.05, 0.1)


@click.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--split", default="val", show_default=True)
@click.option("--limit", default=24, show_default=True, type=click.IntRange(min=1))
@click.option("--method", default="net", show_default=True,
              help="Flow method of lesiontrack.tracking.flow.estimate_flow.")
@click.option("--weights", default="default", show_default=True,
              help="Tracker weights (.keras) or 'default'.")
@click.option("--max-diagonal", default="auto", show_default=True,
              help="Working diagonal of the network (px), 'auto' (the variant's) or 'none'.")
@click.option("--sheet", type=click.Path(dir_okay=False), help="PNG of error maps.")
def main(dataset, split, limit, method, weights, max_diagonal, sheet):
    """PCK of the tracker's flow on skin and elsewhere, on DATASET's stored pairs."""
    import cv2

    from lesiontrack.tracking import losses, pwc  # noqa: F401  (custom layers of the weights)
    from lesiontrack.tracking.data import load_pair, pair_records
    from lesiontrack.tracking.flow import METHODS, estimate_flow
    from synth.io import write_image
    from synth.skin import segment_skin

    key = max_diagonal.lower()
    try:
        diagonal = "auto" if key == "auto" else None if key == "none" else float(max_diagonal)
    except ValueError:
        raise click.BadParameter(f"{max_diagonal!r}: a number, 'auto' or 'none'",
                                 param_hint="--max-diagonal") from None
    if method not in METHODS:
        raise click.BadParameter(f"{method!r}: one of {', '.join(METHODS)}", param_hint="--method")
    options = {"weights": weights, "max_diagonal": diagonal} if method == "net" else {}
    records = pair_records(dataset, split)[:limit]
    if not records:
        raise click.ClickException(f"{dataset}: no pairs in split {split!r}")
    errors = {"skin": [], "rest": []}
    rows = []
    with click.progressbar(records, label="pairs") as bar:
        for record in bar:
            image0, image1, flow, valid = load_pair(dataset, record)
            estimate = estimate_flow(image0, image1, method=method, **options)
            error = np.sqrt(((estimate - flow) ** 2).sum(-1)) / math.hypot(*valid.shape)
            skin = segment_skin(image0).astype(bool)
            errors["skin"].append(error[valid & skin])
            errors["rest"].append(error[valid & ~skin])
            if sheet and len(rows) < 8:
                scaled = (np.clip(error / 0.05, 0, 1) * 255).astype(np.uint8)
                colour = cv2.applyColorMap(scaled, cv2.COLORMAP_JET)[..., ::-1].copy()
                colour[~valid] = 0
                rows.append(np.concatenate([cv2.resize(x, (256, 256))
                                            for x in (image0, image1, colour)], 1))
    total = sum(e.size for values in errors.values() for e in values)
    for region, values in errors.items():
        pooled = np.concatenate(values)
        pck = " / ".join(f"{(pooled <= a).mean():.3f}" for a in ALPHAS)
        click.echo(f"{region}: {pooled.size / total:.2f} of the valid pixels, "
                   f"PCK@{'/'.join(f'{a:g}' for a in ALPHAS)} {pck}")
    if sheet:
        write_image(sheet, np.concatenate(rows, 0))
        click.echo(f"error maps in {sheet}")


if __name__ == "__main__":
    main()
