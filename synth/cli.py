"""Command line: ``synth make-dataset`` and ``synth contact-sheet``.

Thin: options are parsed into a DatasetConfig and handed to synth.writer. Bad input ends with
a one-line error naming the file and the problem and exit status 1.
"""
from __future__ import annotations

import logging
import sys

import click

from synth.io import InputError


class InputErrorGroup(click.Group):
    """A group that turns InputError into a one-line message and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InputError as error:
            click.echo(f"Error: {error}", err=True)
            ctx.exit(1)


def _parse_size(ctx, param, value):
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter("expected WxH, e.g. 512x512") from None
    if width < 64 or height < 64:
        raise click.BadParameter("each side must be at least 64 px")
    return width, height


def _parse_shard(ctx, param, value):
    try:
        number, total = (int(v) for v in value.split("/"))
    except ValueError:
        raise click.BadParameter("expected K/N, e.g. 2/8") from None
    if not (total >= 1 and 1 <= number <= total):
        raise click.BadParameter("K must be between 1 and N")
    return number, total


@click.group(cls=InputErrorGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log diagnostics.")
@click.version_option(package_name="lesiontrack")
def main(verbose):
    """Synthesize lesion detection and tracking datasets from lesion photos and body photos."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@main.command("make-dataset")
@click.option("--lesions", type=click.Path(exists=True, file_okay=False),
              help="Lesion library: PAD-UFES-20 (metadata.csv), ISIC 2017 (labels.csv) or a "
                   "folder with lesions.csv. Default: the built-in procedural lesions.")
@click.option("--bodies", type=click.Path(exists=True, file_okay=False),
              help="Folder of body photos (optional skin/<name>.png masks, lesion boxes). "
                   "Default: the built-in procedural skin.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder (created; an interrupted run in it is resumed).")
@click.option("--count", default=100, show_default=True, type=click.IntRange(1),
              help="Number of samples in the whole dataset (all shards).")
@click.option("--pairs", is_flag=True, help="Also make tracking pairs (t1 photo, flow).")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Processes.")
@click.option("--size", default="512x512", show_default=True, callback=_parse_size,
              help="Sample size WxH in pixels.")
@click.option("--shard", default="1/1", show_default=True, callback=_parse_shard,
              help="Make only shard K of N (samples K-1, K-1+N, ...); shards written to one "
                   "folder merge by their manifests.")
@click.option("--mm-per-px", default=0.4, show_default=True, type=click.FloatRange(min=0.01),
              help="Default body photo scale (bodies.csv overrides per photo).")
@click.option("--lesions-per-image", default="3-9", show_default=True,
              help="Range of lesions blended per image, MIN-MAX.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def make_dataset(lesions, bodies, out, count, pairs, seed, workers, size, shard, mm_per_px,
                 lesions_per_image, no_progress):
    """Blend lesions onto body photos: images, 3-class label maps, instance maps, COCO
    annotations and, with --pairs, t1 photos with dense forward flow."""
    from synth.writer import DatasetConfig, make_dataset as run

    try:
        low, high = (int(v) for v in lesions_per_image.split("-"))
    except ValueError:
        raise click.BadParameter("expected MIN-MAX", param_hint="--lesions-per-image") from None
    config = DatasetConfig(count=count, lesions=_resolved(lesions), bodies=_resolved(bodies),
                           pairs=pairs, seed=seed, size=size, mm_per_px=mm_per_px,
                           lesions_per_image=(low, high))
    summary = run(config, out, workers=workers, shard=shard, progress=not no_progress)
    if summary["skipped"]:
        click.echo(f"Warning: skipped {len(summary['skipped'])} unusable source files:", err=True)
        for path, reason in summary["skipped"][:20]:
            click.echo(f"  {reason}", err=True)
    source = " (built-in procedural source)" if summary["procedural"] else ""
    click.echo(f"{summary['samples']} samples in {summary['out']}{source}")


def _resolved(path):
    from pathlib import Path
    return None if path is None else str(Path(path).resolve())


@main.command("contact-sheet")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.option("--count", default=6, show_default=True, type=click.IntRange(1))
@click.option("--split", type=click.Choice(["train", "val", "test"]), help="Only this split.")
@click.option("--tile", default=320, show_default=True, type=click.IntRange(64),
              help="Tile width in pixels.")
@click.option("--seed", default=0, show_default=True, type=int, help="Which samples to draw.")
def contact_sheet(dataset, out, count, split, tile, seed):
    """Draw samples as a PNG: image, label overlay, and the pair with flow arrows and match lines."""
    from synth.io import write_image
    from synth.sheet import contact_sheet as draw

    write_image(out, draw(dataset, count=count, split=split, tile=tile, seed=seed))
    click.echo(out)


@main.command("index")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
def index(dataset):
    """Rebuild annotations.json from every manifest in DATASET (after merging shards)."""
    from synth.writer import write_coco

    click.echo(write_coco(dataset))


if __name__ == "__main__":
    sys.exit(main())
