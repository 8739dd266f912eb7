"""Training of the detector (Li, Esteva et al. 2016, sec. 4), resumable, with validation.

:func:`fit` is a generic loop (Keras ``fit`` one epoch at a time, a validation callable, best
checkpoint, state file, CSV log, curve plot) that any model can use; :func:`train_detector`
plugs the detector, its loss and its data into it.

Files written beside ``out`` (``MODEL.keras``):

* ``MODEL.keras``        best model so far by the validation metric;
* ``MODEL.last.keras``   model (with optimizer state) after the last finished epoch;
* ``MODEL.state.json``   ``{"epoch", "best", "best_epoch", "monitor", ...}`` for resuming;
* ``MODEL.csv``          one row per epoch; ``MODEL.png`` the curves.
"""
from __future__ import annotations

import csv
import io as _io
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synth.io import IGNORE, InputError, load_sample, read_json, write_bytes, write_json

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- pixel metrics


def confusion_matrix(labels, predictions, *, num_classes=3, ignore=IGNORE):
    """Pixel confusion matrix, int64 (C, C), rows = truth, columns = prediction.

    ``labels`` and ``predictions`` are integer arrays of the same shape; ``ignore`` pixels of
    ``labels`` are left out.
    """
    labels = np.asarray(labels).ravel().astype(np.int64)
    predictions = np.asarray(predictions).ravel().astype(np.int64)
    valid = labels != ignore
    flat = labels[valid] * num_classes + predictions[valid]
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_iou(confusion):
    """Intersection over union per class from a confusion matrix; NaN for absent classes."""
    confusion = np.asarray(confusion, np.float64)
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


def histogram_auc(positive_counts, negative_counts):
    """ROC AUC from score histograms over the same ascending bins (ties count one half).

    Cheap enough to accumulate over whole validation photos: P(lesion) binned into a few
    hundred bins. NaN when either class is empty.
    """
    positive = np.asarray(positive_counts, np.float64)
    negative = np.asarray(negative_counts, np.float64)
    if positive.sum() == 0 or negative.sum() == 0:
        return float("nan")
    negatives_below = np.cumsum(negative) - negative
    wins = (positive * (negatives_below + 0.5 * negative)).sum()
    return float(wins / (positive.sum() * negative.sum()))


# --------------------------------------------------------------------------- generic loop


@dataclass(frozen=True)
class TrainingFiles:
    """Paths written by :func:`fit` for a model path ``out``."""

    best: Path
    last: Path
    state: Path
    log: Path
    plot: Path

    @classmethod
    def beside(cls, out):
        out = Path(out)
        if out.suffix != ".keras":
            raise InputError(f"{out}: the model path must end in .keras")
        stem = out.with_suffix("")
        return cls(best=out, last=Path(f"{stem}.last.keras"), state=Path(f"{stem}.state.json"),
                   log=out.with_suffix(".csv"), plot=out.with_suffix(".png"))


def fit(model, make_dataset, validate, out, *, epochs, steps, monitor, mode="max",
        callbacks=(), config=None):
    """Train ``model`` epoch by epoch, validating, checkpointing and logging; resumable.

    Parameters
    ----------
    model : keras.Model
        Compiled model. Replaced by the last checkpoint when ``out`` has a state file.
    make_dataset : callable
        ``make_dataset(epoch) -> tf.data.Dataset`` of ``steps`` batches for that epoch (the
        epoch number should seed it, so a resumed run sees the same data).
    validate : callable
        ``validate(model) -> dict`` of float validation figures.
    out : path-like
        Best model path (``.keras``); companions as in :class:`TrainingFiles`.
    epochs, steps : int
        Total epochs (including those already done when resuming) and batches per epoch.
    monitor : str
        Key of the validation dict that selects the best model; ``mode`` "max" or "min".
    callbacks : sequence of keras.callbacks.Callback
        Passed to ``model.fit``.
    config : dict, optional
        Recorded in the state file.

    Returns
    -------
    model : keras.Model
        The model after the last epoch.
    history : list of dict
        One row per epoch (all epochs in the log, including earlier runs).
    """
    import keras

    files = TrainingFiles.beside(out)
    files.best.parent.mkdir(parents=True, exist_ok=True)
    better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)
    start, best, best_epoch = 0, None, None
    history = []
    if files.state.is_file():
        state = read_json(files.state)
        start, best, best_epoch = state["epoch"], state.get("best"), state.get("best_epoch")
        checkpoint = files.last if files.last.is_file() else files.best
        log.info("resuming from %s after epoch %d (best %s=%s)", checkpoint, start, monitor, best)
        try:
            model = keras.saving.load_model(checkpoint)
        except Exception as error:
            raise InputError(f"{checkpoint}: cannot resume from this checkpoint ({error})") from None
        if files.log.is_file():
            with open(files.log, newline="") as handle:
                history = [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)][:start]
    verbose = 1 if sys.stderr.isatty() else 2
    for epoch in range(start, epochs):
        began = time.perf_counter()
        result = model.fit(make_dataset(epoch), epochs=epoch + 1, initial_epoch=epoch,
                           steps_per_epoch=steps, verbose=verbose, callbacks=list(callbacks),
                           shuffle=False)
        train_seconds = time.perf_counter() - began
        row = {"epoch": epoch + 1, "loss": float(result.history["loss"][-1]),
               "train_seconds": round(train_seconds, 2)}
        row.update({f"val_{k}": float(v) for k, v in validate(model).items()})
        value = row[f"val_{monitor}"]
        improved = best is None or (not math.isnan(value) and better(value, best))
        model.save(files.last)
        if improved:
            best, best_epoch = value, epoch + 1
            model.save(files.best)
        history.append(row)
        _write_log(files.log, history)
        _plot(files.plot, history)
        write_json(files.state, {"epoch": epoch + 1, "best": best, "best_epoch": best_epoch,
                                 "monitor": monitor, "mode": mode, "config": config or {}})
        log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.4g}" for k, v in row.items()))
    return model, history


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def _write_log(path, history):
    """Write the epoch rows as CSV, atomically."""
    fields = list(dict.fromkeys(key for row in history for key in row))
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(history)
    write_bytes(path, buffer.getvalue().encode())


def _plot(path, history):
    """Plot loss and validation figures per epoch to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("loss", "val_loss"):
        if key in history[0]:
            left.plot(epochs, [row[key] for row in history], marker="o", label=key)
    left.set(xlabel="epoch", ylabel="loss", title="Loss")
    left.legend()
    for key in history[0]:
        if key.startswith("val_") and key != "val_loss":
            right.plot(epochs, [row[key] for row in history], marker="o", label=key[4:])
    right.set(xlabel="epoch", ylim=(0, 1), title="Validation")
    right.legend()
    figure.tight_layout()
    buffer = _io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------- detector


def evaluate_segmentation(model, samples, *, loss, bins=256):
    """Validation figures of a detector over (image, labels) samples.

    Parameters
    ----------
    model : keras.Model
    samples : iterable
        (float32 (1, H, W, 3), uint8 (H, W)) pairs, e.g. from
        :func:`lesiontrack.data.validation_samples`.
    loss : callable
        ``loss(probabilities (H, W, 3), labels (H, W)) -> float``.
    bins : int
        Histogram bins of P(lesion) for the AUC.

    Returns
    -------
    dict
        ``loss`` (mean over samples), ``accuracy`` (labelled pixels), ``iou_benign``,
        ``iou_malignant``, ``mean_iou`` (lesion classes present), ``lesion_iou``
        (lesion vs background), ``auc`` (P(lesion), lesion vs background pixels).
    """
    from .detect import graph_predictor

    predict = graph_predictor(model)
    confusion = np.zeros((3, 3), np.int64)
    positive = np.zeros(bins, np.int64)
    negative = np.zeros(bins, np.int64)
    losses = []
    for image, labels in samples:
        probabilities = np.asarray(predict(image))[0].astype(np.float32)
        losses.append(loss(probabilities, labels))
        confusion += confusion_matrix(labels, probabilities.argmax(-1))
        valid = labels != IGNORE
        p_lesion = probabilities[..., 1] + probabilities[..., 2]
        index = np.clip((p_lesion[valid] * bins).astype(np.int64), 0, bins - 1)
        is_lesion = labels[valid] > 0
        positive += np.bincount(index[is_lesion], minlength=bins)
        negative += np.bincount(index[~is_lesion], minlength=bins)
    iou = class_iou(confusion)
    binary = np.array([[confusion[0, 0], confusion[0, 1:].sum()],
                       [confusion[1:, 0].sum(), confusion[1:, 1:].sum()]])
    lesion_iou = class_iou(binary)[1]
    present = iou[1:][~np.isnan(iou[1:])]
    return {
        "loss": float(np.mean(losses)) if losses else float("nan"),
        "accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)),
        "iou_benign": float(iou[1]),
        "iou_malignant": float(iou[2]),
        "mean_iou": float(present.mean()) if present.size else float("nan"),
        "lesion_iou": float(lesion_iou),
        "auc": histogram_auc(positive, negative),
    }


def detector_class_weights(root, records, *, limit=200, power=0.5):
    """Class weights from the label maps of (at most ``limit``) training records."""
    from .losses import class_weights_from_labels

    labels = (load_sample(root, record)["labels"] for record in records[:limit])
    return class_weights_from_labels(labels, power=power)


def train_detector(dataset, out, *, epochs=10, steps=100, batch=8, crop=256, seed=0, init=None,
                   learning_rate=1e-3, class_weights=None, dice_weight=0.5, lesion_bias=0.7,
                   val_crop=None, val_limit=64, monitor="mean_iou", filters=None,
                   mixed_precision=False):
    """Train the detector on a synthesized dataset; resumes when ``out`` has a state file.

    Parameters
    ----------
    dataset : path-like
        Dataset folder (``synth make-dataset``); "train" for training, "val" for validation.
    out : path-like
        Best model path (``.keras``); see the module docstring for the companion files.
    epochs, steps, batch, crop : int
        Epochs, batches per epoch, crops per batch, crop side (a multiple of the stride).
    seed : int
        Seeds initialisation-independent randomness: crops, augmentation per epoch.
    init : path-like, optional
        Weights to start from (as accepted by :func:`lesiontrack.models.fcn.FCN`).
    learning_rate : float
        Adam step size.
    class_weights : sequence of float, optional
        (3,) weights of the cross-entropy; default from the training labels
        (:func:`lesiontrack.losses.class_weights_from_labels`).
    dice_weight : float
        Weight of the soft Dice term on the lesion classes.
    lesion_bias : float
        Share of crops placed around a lesion.
    val_crop : int, optional
        Validate on centred crops of this side instead of full photos.
    val_limit : int
        Validate on at most this many "val" photos (the same ones every epoch).
    monitor : str
        Validation figure selecting the best checkpoint (higher is better).
    filters : sequence of int, optional
        Widths of the conv levels when not starting from ``init``.
    mixed_precision : bool
        Compute in bfloat16 (weights stay float32; the softmax head is float32).

    Returns
    -------
    list of dict
        The per-epoch log rows.
    """
    import keras

    from . import data as data_module
    from .losses import SegmentationLoss, segmentation_loss
    from .models.fcn import FCN, model_stride

    dataset = Path(dataset)
    train_records = data_module.split_records(dataset, "train")
    val_records = data_module.split_records(dataset, "val")
    if class_weights is None:
        class_weights = detector_class_weights(dataset, train_records)
    class_weights = [float(w) for w in class_weights]
    log.info("class weights %s", class_weights)
    if mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = FCN(weights=init, filters=filters)
    finally:
        if mixed_precision:
            keras.mixed_precision.set_dtype_policy("float32")
    stride = model_stride(model)
    if crop % stride:
        raise InputError(f"crop {crop}: must be a multiple of the model stride {stride}")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=SegmentationLoss(class_weights, dice_weight=dice_weight))

    def make_dataset(epoch):
        rng = np.random.default_rng([seed, epoch])
        return data_module.training_dataset(dataset, train_records, count=steps * batch,
                                            crop=crop, batch=batch, rng=rng,
                                            lesion_bias=lesion_bias)

    def validate(model):
        samples = data_module.validation_samples(dataset, val_records, stride=stride,
                                                 crop=val_crop, limit=val_limit)
        return evaluate_segmentation(
            model, samples,
            loss=lambda p, y: segmentation_loss(p, y, class_weights=class_weights,
                                                dice_weight=dice_weight))

    config = {"dataset": str(dataset), "epochs": epochs, "steps": steps, "batch": batch,
              "crop": crop, "seed": seed, "init": None if init is None else str(init),
              "learning_rate": learning_rate, "class_weights": class_weights,
              "dice_weight": dice_weight, "lesion_bias": lesion_bias,
              "mixed_precision": mixed_precision}
    _, history = fit(model, make_dataset, validate, out, epochs=epochs, steps=steps,
                     monitor=monitor, mode="max", config=config)
    return history
