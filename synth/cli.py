"""Command line: ``synth make-dataset`` and ``synth contact-sheet``.

Thin: options are parsed into a DatasetConfig and handed to synth.writer. Bad input ends with
a one-line error naming the file and the problem and exit status 1.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from synth.io import InputError


class InputErrorGroup(click.Group):
    """A group that turns bad input into a one-line message and exit status 1.

    InputError (a file that cannot be used, named in the message) and OSError (a file that
    cannot be read or written: permissions, a folder where a file should be, a full disk).
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InputError as error:
            click.echo(f"Error: {error}", err=True)
            ctx.exit(1)
        except OSError as error:
            click.echo(f"Error: {_os_error_message(error)}", err=True)
            ctx.exit(1)


def _os_error_message(error: OSError) -> str:
    """'<file>: <reason>' for an OSError, on one line."""
    reason = " ".join((error.strerror or str(error) or type(error).__name__).split())
    # A rename (atomic writes) names its temporary source first: the destination is the file.
    name = error.filename2 if error.filename2 is not None else error.filename
    return reason if name is None else f"{name}: {reason}"


def output_folder(ctx, param, value):
    """Click callback of an ``--out`` folder: InputError when a file of that name is in the way."""
    if value is not None and Path(value).exists() and not Path(value).is_dir():
        raise InputError(f"{value}: exists and is not a folder")
    return value


def output_file(ctx, param, value):
    """Click callback of an ``--out`` file: InputError when a folder of that name is in the way."""
    if value is not None and Path(value).is_dir():
        raise InputError(f"{value}: is a folder; expected a file name")
    return value


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


def _parse_libraries(ctx, param, values):
    """DIR or DIR:WEIGHT, repeated: (folders, weights or None)."""
    folders, weights = [], []
    for value in values:
        folder, weight = value, 1.0
        head, sep, tail = value.rpartition(":")
        if sep and head:
            try:
                weight = float(tail)
                folder = head
            except ValueError:
                pass
        if not Path(folder).is_dir():
            raise click.BadParameter(f"{folder}: no such folder")
        if not weight > 0:
            raise click.BadParameter(f"{value}: the weight must be a positive number")
        folders.append(str(Path(folder).resolve()))
        weights.append(weight)
    if not folders:
        return None, None
    return tuple(folders), (tuple(weights) if any(w != 1.0 for w in weights) else None)


def _parse_skin_tone(ctx, param, value):
    """'V-VI', '5-6', 'VI' or '5,6' -> tuple of Fitzpatrick types."""
    if not value:
        return None
    from synth.augment import _parse_type

    try:
        parts = [p for p in value.replace(",", "-").split("-") if p.strip()]
        types = [_parse_type(p) for p in parts]
    except ValueError:
        raise click.BadParameter("expected Fitzpatrick types such as V-VI, 5-6 or IV") from None
    if "-" in value and len(types) == 2:
        types = list(range(min(types), max(types) + 1))
    return tuple(sorted(set(types)))


@main.command("make-dataset")
@click.option("--lesions", multiple=True, callback=_parse_libraries, metavar="DIR[:WEIGHT]",
              help="Lesion library: PAD-UFES-20 (metadata.csv), ISIC 2017 (labels.csv) or a "
                   "folder with lesions.csv; repeat for several libraries. WEIGHT (default 1) "
                   "multiplies how often each lesion of that library is drawn. Default: the "
                   "built-in procedural lesions.")
@click.option("--bodies", type=click.Path(exists=True, file_okay=False),
              help="Folder of body photos (optional skin/<name>.png masks, lesion boxes). "
                   "Default: the built-in procedural skin.")
@click.option("--out", required=True, type=click.Path(), callback=output_folder,
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
@click.option("--hair-fraction", default=0.3, show_default=True, type=click.FloatRange(0, 1),
              help="Fraction of samples with hair strands drawn over skin and lesions.")
@click.option("--min-contrast", default=None, type=click.FloatRange(min=0),
              help="Delta E00 below which a blended lesion is labelled ignore "
                   "[default: synth.contrast.VISIBLE_DELTA_E].")
@click.option("--skin-tone", callback=_parse_skin_tone, metavar="TYPES",
              help="Shift every sample's skin to these Fitzpatrick types, e.g. V-VI "
                   "(default: 60 %% of samples shifted to a random type).")
@click.option("--split", "only_split", type=click.Choice(["train", "val", "test"]),
              help="Make only the samples of this split (same files as in the full dataset).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def make_dataset(lesions, bodies, out, count, pairs, seed, workers, size, shard, mm_per_px,
                 lesions_per_image, hair_fraction, min_contrast, skin_tone, only_split,
                 no_progress):
    """Blend lesions onto body photos: images, 3-class label maps, instance maps, COCO
    annotations and, with --pairs, t1 photos with dense forward flow."""
    from synth.writer import DatasetConfig, make_dataset as run

    try:
        low, high = (int(v) for v in lesions_per_image.split("-"))
    except ValueError:
        raise click.BadParameter("expected MIN-MAX", param_hint="--lesions-per-image") from None
    folders, weights = lesions
    extra = {} if min_contrast is None else {"min_contrast": min_contrast}
    config = DatasetConfig(count=count, lesions=folders, bodies=_resolved(bodies),
                           pairs=pairs, seed=seed, size=size, mm_per_px=mm_per_px,
                           lesions_per_image=(low, high), lesion_weights=weights,
                           hair_fraction=hair_fraction, skin_tone=skin_tone, **extra)
    summary = run(config, out, workers=workers, shard=shard, progress=not no_progress,
                  only_split=only_split)
    if summary["skipped"]:
        click.echo(f"Warning: skipped {len(summary['skipped'])} unusable source files:", err=True)
        for path, reason in summary["skipped"][:20]:
            click.echo(f"  {reason}", err=True)
    source = " (built-in procedural source)" if summary["procedural"] else ""
    click.echo(f"{summary['samples']} samples in {summary['out']}{source}")
    counts = summary["lesions"]
    click.echo(f"{counts['blended']} blended lesions ({counts['reblended']} re-blended, "
               f"{counts['invisible']} too faint: ignore), {counts['thin_masks_rejected']} thin "
               f"masks rejected, {counts['real_lesions']} real lesions (label 3)")


def _resolved(path):
    from pathlib import Path
    return None if path is None else str(Path(path).resolve())


@main.command("contact-sheet")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(), callback=output_file,
              help="PNG to write.")
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
