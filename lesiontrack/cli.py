"""Command line: ``lesiontrack train|detect|flow|match|report|evaluate``.

Thin: options are parsed here and handed to library functions. Bad input ends with a one-line
error naming the file and the problem and exit status 1.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from lesiontrack.detection.defaults import MIN_CONTRAST, MIN_SCORE
from synth.cli import InputErrorGroup, output_file, output_folder
from synth.io import InputError


_TENSORFLOW_COMMANDS = {"detect", "match", "train", "evaluate", "flow", "report"}


def _import_tensorflow_quietly():
    """Import TensorFlow with its C++ start-up banner (printed to fd 2) silenced."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _RemovedOnFailure:
    """Context resource: the folders a command creates for ``path`` go again if it fails.

    Only what did not exist when the command started is removed, and nothing that holds a
    training state (``*.state.json``) to resume from.
    """

    def __init__(self, path):
        missing = Path(path).absolute()
        self.created = None
        while not missing.exists():
            self.created, missing = missing, missing.parent

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:  # click before 8.3 gives its resources no exception
            exc_type, exc = sys.exc_info()[:2]
        succeeded = exc_type is None or (isinstance(exc, click.exceptions.Exit)
                                         and exc.exit_code == 0)
        folder = self.created
        if not succeeded and folder is not None and folder.is_dir() \
                and not any(folder.rglob("*.state.json")):
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        return False


def _output_folder(ctx, param, path):
    """An ``--out`` folder: InputError when a file of that name is in the way; removed again
    when the command fails and had created it."""
    output_folder(ctx, param, path)
    if path is not None:
        ctx.with_resource(_RemovedOnFailure(path))
    return path


def _output_file(ctx, param, path):
    """An ``--out`` file: InputError when a folder of that name is in the way; the folders
    created for it are removed again when the command fails (unless resumable)."""
    output_file(ctx, param, path)
    if path is not None:
        ctx.with_resource(_RemovedOnFailure(path.parent))
    return path


def _read_photo(path):
    """A photo as uint8 RGB (H, W, 3); InputError naming the file when it cannot be used."""
    from synth.io import read_image

    from lesiontrack.imaging import MIN_SIDE

    image = read_image(path)
    height, width = image.shape[:2]
    if height < MIN_SIDE or width < MIN_SIDE:
        raise InputError(f"{path}: {width}x{height} pixels is too small; need at least "
                         f"{MIN_SIDE}x{MIN_SIDE}")
    return image


@click.group(cls=InputErrorGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log diagnostics.")
@click.version_option(package_name="lesiontrack")
@click.pass_context
def main(ctx, verbose):
    """Find skin lesions on body photos, flag the suspicious ones, track them between visits."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # TensorFlow reads its C++ log level once, when it is first imported by a command.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not verbose and ctx.invoked_subcommand in _TENSORFLOW_COMMANDS and "--help" not in sys.argv:
        _import_tensorflow_quietly()


@main.group()
def train():
    """Train the detector, the tracker, the second-stage classifier or a baseline."""


@main.group()
def evaluate():
    """Evaluate detection or tracking on held-out data with known answers."""


def _epoch_range(ctx, param, value):
    """FIRST:LAST of --lr-decay as (int, int), LAST after FIRST."""
    if value is None:
        return None
    try:
        first, last = (int(part) for part in value.split(":"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected FIRST:LAST, two epoch numbers") from None
    if first < 0 or last <= first:
        raise click.BadParameter(f"{value!r}: LAST must follow FIRST, both >= 0")
    return first, last


def _class_weights(ctx, param, value):
    """W0,W1,W2,W3 of --class-weights as a list of 4 non-negative floats, or None."""
    if value is None:
        return None
    try:
        weights = [float(part) for part in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected four numbers, e.g. 1,1,1,4") from None
    if len(weights) != 4 or min(weights) < 0:
        raise click.BadParameter(f"{value!r}: expected four numbers >= 0, one per label 0-3")
    return weights


def step_size_options(prefix=""):
    """The --lr-decay and --lr-final options (:func:`lesiontrack.training.step_size_schedule`);
    ``prefix`` starts their help (e.g. the variant they apply to)."""
    def text(words):
        return prefix + words if prefix else words[0].upper() + words[1:]

    def decorate(command):
        command = click.option(
            "--lr-final", "final_learning_rate", type=click.FloatRange(min=0),
            help=text("step size at the end of --lr-decay  [default: --lr / 20]"))(command)
        return click.option(
            "--lr-decay", "decay", callback=_epoch_range, metavar="FIRST:LAST",
            help=text("cosine decay of the step size, from --lr once FIRST epochs are done "
                      "to --lr-final once LAST are done; constant by default."))(command)
    return decorate


@train.command("detector")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), callback=_output_file,
              help="Best model file (.keras); .csv log, .png curves, .state.json beside it.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--steps", default=100, show_default=True, type=click.IntRange(min=1),
              help="Batches per epoch.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--crop", default=256, show_default=True, type=click.IntRange(min=8),
              help="Training crop side (multiple of the model stride, 8).")
@click.option("--seed", default=0, show_default=True, help="Seed of crops and augmentation.")
@click.option("--lr", "learning_rate", default=1e-3, show_default=True, help="Adam step size.")
@click.option("--init", type=click.Path(path_type=Path), help="Weights (.keras) to start from.")
@click.option("--val-limit", default=64, show_default=True, type=click.IntRange(min=1),
              help="Validation photos per epoch.")
@click.option("--bf16", "mixed_precision", is_flag=True, help="Mixed bfloat16 compute.")
@click.option("--hard-negatives", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON of hard negatives on the training body photos "
                   "(experiments/mine_hard_negatives.py).")
@click.option("--hard-negative-bias", default=0.15, show_default=True,
              type=click.FloatRange(0, 1), help="Share of crops placed on a hard negative.")
@click.option("--hair-weight", default=2.0, show_default=True, type=click.FloatRange(min=0),
              help="Hairy samples are drawn up to 1 + this many times as often.")
@click.option("--lesion-bias", default=0.6, show_default=True, type=click.FloatRange(0, 1),
              help="Share of crops placed on a lesion.")
@click.option("--monitor", default="sens_1fp", show_default=True,
              help="Validation figure that selects the best model (higher is better).")
@click.option("--dice-weight", default=0.5, show_default=True, type=click.FloatRange(min=0),
              help="Weight of the soft Dice term on the lesion classes (0: cross-entropy only).")
@click.option("--class-weights", callback=_class_weights,
              metavar="W0,W1,W2,W3",
              help="Weights of the cross-entropy by label (background, benign, malignant, "
                   "lesion of unknown diagnosis); replaces --class-weight-power.")
@click.option("--class-weight-power", default=0.5, show_default=True,
              type=click.FloatRange(0, 1),
              help="Exponent of the inverse label frequency weighting the cross-entropy "
                   "(0: unweighted, 1: balanced).")
@step_size_options()
def train_detector_command(dataset, out, epochs, steps, batch, crop, seed, learning_rate, init,
                           val_limit, mixed_precision, hard_negatives, hard_negative_bias,
                           hair_weight, lesion_bias, monitor, dice_weight, class_weights,
                           class_weight_power, decay, final_learning_rate):
    """Train the lesion detector on DATASET (resumes when OUT has a state file)."""
    from lesiontrack.detection.train import train_detector

    history = train_detector(dataset, out, epochs=epochs, steps=steps, batch=batch, crop=crop,
                             seed=seed, init=init, learning_rate=learning_rate,
                             val_limit=val_limit, mixed_precision=mixed_precision,
                             hard_negatives=hard_negatives,
                             hard_negative_bias=hard_negative_bias, hair_weight=hair_weight,
                             lesion_bias=lesion_bias, monitor=monitor, decay=decay,
                             final_learning_rate=final_learning_rate,
                             class_weight_power=class_weight_power, dice_weight=dice_weight,
                             class_weights=class_weights)
    if history:
        last = history[-1]
        click.echo(f"epoch {last['epoch']}: val sensitivity at 1 FP/image "
                   f"{last['val_sens_1fp']:.3f}, val mean IoU {last['val_mean_iou']:.3f}; "
                   f"best model in {out}")


@main.command("detect")
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), callback=_output_folder,
              help="Folder for <photo>.json, <photo>_overlay.png, <photo>_heatmap.png.")
@click.option("--weights", default="default", show_default=True,
              help="Detector weights (.keras) or 'default'.")
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="P(lesion) threshold of a lesion's pixels.")
@click.option("--min-score", default=MIN_SCORE, show_default=True, type=click.FloatRange(0, 1),
              help="Least mean P(lesion) of a lesion.")
@click.option("--min-contrast", default=MIN_CONTRAST, show_default=True,
              type=click.FloatRange(min=0),
              help="Least visible contrast of a lesion: Delta E00 of its mean colour against "
                   "the skin around it (0 keeps every one).")
@click.option("--format", "output_format", default="json", show_default=True,
              type=click.Choice(["json", "coco"]),
              help="One JSON per photo, or one COCO annotations.json.")
@click.option("--no-skin-mask", "skin_only", flag_value=False, default=True,
              help="Search every pixel: do not keep lesions to the photo's skin (by default "
                   "clothing, background and padding are masked out).")
@click.option("--classifier", default="default", show_default=True,
              help="Second-stage malignancy classifier (.keras), 'default', or 'none' (the "
                   "FCN's malignant share is the malignancy).")
def detect_command(photos, out, weights, threshold, min_score, min_contrast, output_format,
                   skin_only, classifier):
    """Find and grade skin lesions on PHOTO files."""
    from lesiontrack.detection.detect import detect_files

    results = detect_files(photos, out, weights=weights, threshold=threshold,
                           min_score=min_score, min_contrast=min_contrast or None,
                           format=output_format, skin_only=skin_only,
                           classifier=None if classifier.lower() == "none" else classifier)
    total = sum(len(lesions) for lesions in results.values())
    click.echo(f"{total} lesions on {len(results)} photos; results in {out}")


@train.command("classifier")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), callback=_output_file,
              help="Model file (.keras); .csv log, .png curves, .json summary beside it.")
@click.option("--size", default=32, show_default=True, type=click.IntRange(min=8),
              help="Crop side in pixels (a square of twice the lesion's size, resized).")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--batch", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", "learning_rate", default=1e-3, show_default=True,
              help="AdamW step size (cosine decay).")
@click.option("--library", "libraries", multiple=True, type=click.Path(path_type=Path),
              help="Lesion library whose own photos of training patients are added at body "
                   "scale (repeatable).")
@click.option("--library-copies", default=3, show_default=True, type=click.IntRange(min=1),
              help="Crops per library lesion (each at a new size and skin patch).")
@click.option("--colour-inputs", is_flag=True,
              help="Also feed the lesion's colour statistics (Lab/HSV mean, spread, "
                   "percentiles) to the classifier's head.")
@click.option("--seed", default=0, show_default=True, help="Seed of augmentation and weights.")
def train_classifier_command(dataset, out, size, epochs, batch, learning_rate, libraries,
                             library_copies, colour_inputs, seed):
    """Train the second-stage malignancy classifier on DATASET (resumes from OUT's state)."""
    from lesiontrack.detection.train_classifier import ClassifierTrainingConfig, train_classifier

    config = ClassifierTrainingConfig(size=size, epochs=epochs, batch_size=batch,
                                      learning_rate=learning_rate,
                                      libraries=tuple(str(p) for p in libraries),
                                      library_copies=library_copies,
                                      colour_inputs=colour_inputs, seed=seed)
    summary = train_classifier(dataset, out, config=config)
    click.echo(f"best epoch {summary['best_epoch']}: val AUC {summary['best_val_auc']:.3f} on "
               f"{summary['val_crops']} lesions; model in {out}")


@train.command("colour-stats")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), callback=_output_file,
              help="Model file to write (.pkl).")
@click.option("--split", default="train", show_default=True, help="Dataset split to train on.")
@click.option("--seed", default=0, show_default=True)
def train_colour_stats_command(dataset, out, split, seed):
    """Train the colour-statistics malignancy classifier on DATASET's blended lesions."""
    from lesiontrack.baselines.colour_stats import save_colour_stats, train_colour_stats

    save_colour_stats(train_colour_stats(dataset, split=split, seed=seed), out)
    click.echo(f"wrote {out}")


@train.command("baseline")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), callback=_output_file,
              help="Model file to write (.npz).")
@click.option("--split", default="train", show_default=True, help="Dataset split to train on.")
@click.option("--limit", type=click.IntRange(min=1), help="Use at most N samples.")
@click.option("--seed", default=0, show_default=True, help="Seed of the window sampling.")
def train_baseline(dataset, out, split, limit, seed):
    """Train the sliding-window baseline classifier on DATASET."""
    import numpy as np

    from lesiontrack.baselines.sliding_window import save_sliding_window, train_sliding_window

    model = train_sliding_window(dataset, split=split, limit=limit,
                                 rng=np.random.default_rng(seed))
    click.echo(f"wrote {save_sliding_window(model, out)}")


@evaluate.command("detection")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), callback=_output_folder,
              help="Folder for metrics.json, summary.md and the figures; for photo folders "
                   "also photos.csv and an overlay per photo (pictures of the photos: keep "
                   "the folder out of version control, e.g. under runs/).")
@click.option("--split", default="test", show_default=True,
              help="Split of a synthesized dataset; with --bodies-of, the split whose body "
                   "photos are evaluated.")
@click.option("--bodies-of", type=click.Path(path_type=Path),
              help="Synthesized dataset whose splits.json selects the photos of a photo "
                   "folder: only the body photos it put in --split (e.g. the test bodies, "
                   "never trained on).")
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Detection threshold of the real-photo figures (photo folders) and of "
                   "the recall of the body photos' own lesions (label 3) of a dataset, that "
                   "of `lesiontrack detect` by default. FROC and AP sweep every score.")
@click.option("--weights", default="default", show_default=True,
              help="Detector weights (.keras), 'default', or 'none' to skip the detector.")
@click.option("--baseline", type=click.Path(path_type=Path),
              help="Sliding-window baseline model (.npz) to compare against.")
@click.option("--classifier", default="default", show_default=True,
              help="Second-stage classifier (.keras) grading the detector's lesions, "
                   "'default', or 'none'.")
@click.option("--colour-stats", type=click.Path(path_type=Path),
              help="Colour-statistics classifier (.pkl, `lesiontrack train colour-stats`) "
                   "also scoring the detector's lesions.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate the first N images.")
@click.option("--seed", default=0, show_default=True, help="Seed of the pixel subsample.")
def evaluate_detection_command(source, out, split, bodies_of, threshold, weights, baseline,
                               classifier, colour_stats, limit, seed):
    """Detection figures of the detector (and a baseline) on SOURCE.

    SOURCE is one of:

    \b
    - a synthesized dataset (dataset.json): FROC, COCO AP@0.5 and AP@[.5:.95],
      malignant-vs-benign and pixel ROC, all also by Fitzpatrick skin type;
    - a folder of photos with a COCO annotations.json: the same without the pixel ROC,
      plus the real-photo figures below;
    - a folder of body photos with lesions.csv (tile,x,y,radius_px,label[,note]; label
      'lesion' = clear, 'ambiguous' = doubtful): the real-photo figures only.

    Real-photo figures, at --threshold: recall of the clear lesions, precision (a detection
    on an ambiguous annotation is neither right nor wrong, one on no annotation is a false
    positive), false positives per photo, a row per photo, an overlay per photo. A detection
    is on a lesion when its box holds the lesion's centre or its centroid lies within the
    lesion's radius + 4 px.
    """
    from lesiontrack.evaluate import evaluate_detection

    weights = None if weights.lower() == "none" else weights
    if weights is None and baseline is None:
        raise click.UsageError("nothing to evaluate: --weights none without --baseline")
    evaluate_detection(source, out, split=split, weights=weights, baseline=baseline,
                       classifier=None if classifier.lower() == "none" else classifier,
                       colour_stats=colour_stats, limit=limit, threshold=threshold,
                       bodies_of=bodies_of, seed=seed)
    click.echo((out / "summary.md").read_text(), nl=False)


@evaluate.command("tracking")
@click.argument("pairs", type=click.Path(path_type=Path))
@click.option("--methods", default="net,siftflow,dsp,deepflow,dis", show_default=True,
              help="Comma-separated flow methods: net, siftflow, dsp, deepflow, dis, zero, or "
                   "true (the pairs' own true flow, a check of the evaluation).")
@click.option("--out", required=True, type=click.Path(path_type=Path), callback=_output_folder,
              help="Folder for report.md, report.json and pck.png.")
@click.option("--split", default="test", show_default=True,
              help="Split of a synthesized dataset (ignored for a folder of real pairs).")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate the first N pairs.")
@click.option("--stereo", is_flag=True,
              help="Also evaluate on the Middlebury motorcycle stereo pair (out of domain).")
@click.option("--weights", default="default", show_default=True,
              help="Tracker weights (.keras) or 'default' (method net).")
@click.option("--max-diagonal", type=click.FloatRange(min=32),
              help="Working size of method net: pairs whose diagonal is larger are processed "
                   "at this diagonal (px)  [default: that of `lesiontrack match`, set per "
                   "tracker variant: 362 for pwc, 800 for the others].")
@click.option("--detector-weights", default="default", show_default=True,
              help="Detector of the end-to-end match figures (.keras), 'default', or 'none'.")
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Detector P(lesion) threshold, as `lesiontrack match`.")
@click.option("--alphas", default="0.01,0.02,0.05,0.1", show_default=True,
              help="Comma-separated PCK tolerances (fractions of the image diagonal).")
@click.option("--skin", "n_skin", default=100, show_default=True, type=click.IntRange(min=0),
              help="Random skin keypoints per synthesized pair.")
@click.option("--seed", default=0, show_default=True, help="Seed of the keypoint sampling.")
@click.option("--linear", is_flag=True, help="Linear alpha axis in pck.png (default: log).")
def evaluate_tracking_command(pairs, methods, out, split, limit, stereo, weights, max_diagonal,
                              detector_weights, threshold, alphas, n_skin, seed, linear):
    """PCK, end-point error and lesion matching of flow methods on PAIRS.

    PAIRS is a synthesized dataset (``synth make-dataset --pairs``) or a folder of real pairs:
    <pair>_t0.<ext>, <pair>_t1.<ext> and keypoints.csv with the columns pair,x0,y0,x1,y1,kind
    (a kind starting with "lesion" marks a lesion centre).
    """
    from lesiontrack.tracking.evaluate import EVALUATION_METHODS, evaluate_tracking

    names = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in EVALUATION_METHODS]
    if unknown or not names:
        raise click.BadParameter(f"unknown {', '.join(unknown) or 'empty list'}; choose from "
                                 f"{', '.join(EVALUATION_METHODS)}", param_hint="--methods")
    try:
        tolerances = [float(a) for a in alphas.split(",") if a.strip()]
    except ValueError:
        raise click.BadParameter("not a list of numbers", param_hint="--alphas") from None
    if not tolerances or not all(0 < a <= 1 for a in tolerances):
        raise click.BadParameter("expected numbers in (0, 1]", param_hint="--alphas")
    evaluate_tracking(pairs, out, methods=names, split=split, limit=limit, alphas=tolerances,
                      n_skin=n_skin, seed=seed, stereo=stereo, weights=weights,
                      max_diagonal=max_diagonal,
                      detector_weights=None if detector_weights.lower() == "none"
                      else detector_weights, threshold=threshold, log_axis=not linear)
    click.echo((out / "report.md").read_text(), nl=False)


@train.command("tracker")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), callback=_output_file,
              help="Best model file (.keras); .csv log, .png curves, .state.json beside it.")
@click.option("--init", type=click.Path(path_type=Path),
              help="Detector .keras (trunk copied by layer name) or tracker .keras to continue.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--steps", default=100, show_default=True, type=click.IntRange(min=1),
              help="Batches per epoch.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--crop", default=256, show_default=True, type=click.IntRange(min=16),
              help="Training crop side (multiple of 16).")
@click.option("--seed", default=0, show_default=True, help="Seed of crops and augmentation.")
@click.option("--lr", "learning_rate", default=5e-4, show_default=True, help="Adam step size.")
@click.option("--variant", default="costvolume", show_default=True,
              type=click.Choice(["costvolume", "subtract", "refine", "pwc"]),
              help="Cost volume + residual head, the paper's plain subtraction merge, "
                   "DIS flow + a subtraction-merge residual head, or pwc: a cost volume at "
                   "every level from 1/32 to 1/4 trained on pairs made on the fly.")
@click.option("--min-scale", default=0.5, show_default=True, type=click.FloatRange(0.05, 1),
              help="Pairs are resized by a random factor in [min-scale, max-scale] before "
                   "cropping.")
@click.option("--max-scale", default=1.0, show_default=True, type=click.FloatRange(0.05, 1),
              help="Largest resize factor of the pairs (at least --min-scale).")
@click.option("--synthetic", "synthetic_fraction", default=0.0, show_default=True,
              type=click.FloatRange(0, 1), help="Share of pairs warped on the fly from t0 photos.")
@click.option("--val-limit", default=32, show_default=True, type=click.IntRange(min=1),
              help="Validation pairs per epoch.")
@click.option("--val-diagonal", type=click.FloatRange(min=32),
              help="pwc: validate at this working diagonal (px), as `match` runs the "
                   "network; full size by default.")
@click.option("--freeze", default="auto", show_default=True,
              help="Comma-separated trunk blocks kept fixed (e.g. conv1), 'none', or 'auto' "
                   "(conv1 when --init is a detector).")
@click.option("--bf16", "mixed_precision", is_flag=True,
              help="Mixed bfloat16 compute (flows stay float32).")
@click.option("--curriculum-steps", default=1500, show_default=True, type=click.IntRange(min=0),
              help="pwc: steps over which the motion of the pairs made on the fly grows to "
                   "its full range.")
@step_size_options("pwc: ")
def train_tracker_command(dataset, out, init, epochs, steps, batch, crop, seed, learning_rate,
                          variant, min_scale, max_scale, synthetic_fraction, val_limit,
                          val_diagonal, freeze, mixed_precision, curriculum_steps, decay,
                          final_learning_rate):
    """Train the siamese tracker on DATASET's pairs (resumes when OUT has a state file)."""
    from lesiontrack.tracking.train import train_pwc, train_tracker

    if max_scale < min_scale:
        raise click.BadParameter(f"{max_scale} is below --min-scale {min_scale}",
                                 param_hint="--max-scale")

    blocks = None if freeze == "auto" else tuple(
        b.strip() for b in freeze.split(",") if b.strip() and b.strip() != "none")
    if variant == "pwc":
        history = train_pwc(dataset, out, init=init, epochs=epochs, steps=steps, batch=batch,
                            crop=crop, seed=seed, learning_rate=learning_rate,
                            scale_range=(min_scale, max_scale),
                            curriculum_steps=curriculum_steps, val_limit=val_limit,
                            freeze=("conv1",) if blocks is None else blocks, decay=decay,
                            final_learning_rate=final_learning_rate, val_diagonal=val_diagonal)
    else:
        history = train_tracker(dataset, out, init=init, epochs=epochs, steps=steps,
                                batch=batch, crop=crop, seed=seed, learning_rate=learning_rate,
                                variant=variant, scale_range=(min_scale, max_scale),
                                synthetic_fraction=synthetic_fraction,
                                val_limit=val_limit, freeze=blocks,
                                mixed_precision=mixed_precision)
    if history:
        last = history[-1]
        click.echo(f"epoch {last['epoch']}: val EPE {last['val_epe']:.2f} px, "
                   f"val PCK@0.05 {last['val_pck05']:.3f}; best model in {out}")


@main.command("match")
@click.argument("image0", type=click.Path(path_type=Path))
@click.argument("image1", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), callback=_output_folder,
              help="Folder for match.json and match.png.")
@click.option("--method", default="net", show_default=True,
              type=click.Choice(["net", "deepflow", "dis", "siftflow", "dsp"]),
              help="Dense correspondence used to carry lesions from T0 to T1.")
@click.option("--weights", default="default", show_default=True,
              help="Tracker weights (.keras) or 'default' (method net).")
@click.option("--detector-weights", default="default", show_default=True,
              help="Detector weights (.keras) or 'default'.")
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Detector P(lesion) threshold.")
def match_command(image0, image1, out, method, weights, detector_weights, threshold):
    """Match the lesions of photo IMAGE0 (first visit) to those of IMAGE1 (second visit)."""
    from synth.io import write_image, write_json

    from lesiontrack.tracking.match import draw_matches, match_lesions

    photo0, photo1 = _read_photo(image0), _read_photo(image1)
    result = match_lesions(photo0, photo1, method=method, weights=weights,
                           detector_weights=detector_weights, threshold=threshold)
    result["images"] = [str(image0), str(image1)]
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "match.json", result)
    write_image(out / "match.png", draw_matches(photo0, photo1, result))
    changed = sum(match["changed"] for match in result["matches"])
    click.echo(f"{len(result['matches'])} matched ({changed} changed), {len(result['gone'])} gone, "
               f"{len(result['new'])} new; results in {out}")


@main.command("report")
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), callback=_output_folder,
              help="Folder for report.html and report.json.")
@click.option("--title", help="Heading of the report (a patient or body-site label, say).")
@click.option("--mm-per-px", type=click.FloatRange(min=0, min_open=True),
              help="Scale of the photos (sizes in mm, scale bars); default from the dataset "
                   "manifest or a bodies.csv beside the photo, else sizes in pixels.")
@click.option("--weights", default="default", show_default=True,
              help="Two photos: tracker weights (.keras) or 'default' (method net), as in "
                   "match. One photo: detector weights, as in detect.")
@click.option("--detector-weights", default="default", show_default=True,
              help="Detector weights (.keras) or 'default'.")
@click.option("--classifier", default="default", show_default=True,
              help="Second-stage malignancy classifier (.keras), 'default', or 'none' (the "
                   "FCN's malignant share is the malignancy), as in detect.")
@click.option("--method", default="net", show_default=True,
              type=click.Choice(["net", "deepflow", "dis", "siftflow", "dsp"]),
              help="Dense correspondence used to carry lesions from T0 to T1 (two photos).")
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Detector P(lesion) threshold.")
def report_command(photos, out, title, mm_per_px, weights, detector_weights, classifier, method,
                   threshold):
    """Visit report of PHOTO, or of T0 T1 (two visits): OUT/report.html and its report.json."""
    from lesiontrack.report import write_report

    if len(photos) > 2:
        raise click.BadArgumentUsage(f"expected PHOTO or T0 T1, got {len(photos)} photos")
    one_visit = len(photos) == 1
    if one_visit and "default" not in (weights, detector_weights) and weights != detector_weights:
        raise click.BadOptionUsage("weights", "one photo: --weights and --detector-weights both "
                                              "name the detector; give one of them")
    if one_visit and detector_weights == "default":
        detector_weights = weights
    result = write_report(
        photos, out, title=title, mm_per_px=mm_per_px, method=method, threshold=threshold,
        detector_weights=detector_weights, tracker_weights="default" if one_visit else weights,
        classifier=None if classifier.lower() == "none" else classifier)
    if one_visit:
        click.echo(f"{len(result['lesions'])} lesions; report in {out / 'report.html'}")
    else:
        changed = sum(match["changed"] for match in result["matches"])
        click.echo(f"{len(result['matches'])} matched ({changed} changed), "
                   f"{len(result['gone'])} gone, {len(result['new'])} new; report in "
                   f"{out / 'report.html'}")


@main.command("flow")
@click.argument("image0", type=click.Path(path_type=Path))
@click.argument("image1", type=click.Path(path_type=Path))
@click.option("--method", default="net", show_default=True,
              type=click.Choice(["net", "siftflow", "dsp", "deepflow", "dis", "zero"]),
              help="Dense correspondence method.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Middlebury .flo file for the forward flow IMAGE0 -> IMAGE1.")
@click.option("--npy", is_flag=True, help="Also write the flow as float32 (H, W, 2) .npy.")
@click.option("--png", type=click.Path(path_type=Path), help="Also write a colour-coded flow PNG.")
@click.option("--weights", default="default", show_default=True,
              help="Tracker weights (.keras) or 'default' (method net).")
def flow_command(image0, image1, method, out, npy, png, weights):
    """Dense flow from photo IMAGE0 to photo IMAGE1, at IMAGE0's size, in pixels."""
    import numpy as np

    from synth.io import atomic_path, write_flo, write_image

    from lesiontrack.tracking.flow import estimate_flow, flow_to_color

    options = {"weights": weights} if method == "net" else {}
    flow = estimate_flow(_read_photo(image0), _read_photo(image1), method=method, **options)
    write_flo(out, flow)
    if npy:
        with atomic_path(out.with_suffix(".npy")) as tmp, open(tmp, "wb") as handle:
            np.save(handle, flow)
    if png:
        write_image(png, flow_to_color(flow))
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    click.echo(f"{method} flow {flow.shape[1]}x{flow.shape[0]}, median |flow| "
               f"{np.median(magnitude):.1f} px; written to {out}")


if __name__ == "__main__":
    sys.exit(main())
