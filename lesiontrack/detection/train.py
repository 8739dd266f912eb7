"""Training of the detector (Li, Esteva et al. 2016, sec. 4), resumable, with validation.

:func:`train_detector` plugs the detector (:mod:`lesiontrack.detection.model`), its loss
(:mod:`lesiontrack.detection.losses`) and its data (:mod:`lesiontrack.detection.data`) into the
shared loop :func:`lesiontrack.training.fit` (best checkpoint by validation mean IoU,
``.last.keras`` + ``.state.json`` for resuming, ``.csv`` log, ``.png`` curves beside ``out``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lesiontrack.metrics import class_iou, confusion_matrix, histogram_auc
from lesiontrack.training import fit, mixed_precision as mixed_precision_policy
from synth.io import IGNORE, InputError, load_sample

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- detector


def evaluate_segmentation(model, samples, *, loss, bins=256):
    """Validation figures of a detector over (image, labels) samples.

    Parameters
    ----------
    model : keras.Model
    samples : iterable
        (float32 (1, H, W, 3), uint8 (H, W)) pairs, e.g. from
        :func:`lesiontrack.detection.data.validation_samples`.
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
    from lesiontrack.model_cache import graph_function

    predict = graph_function(model)
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
    from lesiontrack.detection.losses import class_weights_from_labels

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
        Weights to start from (as accepted by :func:`lesiontrack.detection.model.FCN`).
    learning_rate : float
        Adam step size.
    class_weights : sequence of float, optional
        (3,) weights of the cross-entropy; default from the training labels
        (:func:`lesiontrack.detection.losses.class_weights_from_labels`).
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

    from lesiontrack.detection import data as data_module
    from lesiontrack.detection.losses import SegmentationLoss, segmentation_loss
    from lesiontrack.detection.model import FCN, model_stride

    dataset = Path(dataset)
    train_records = data_module.split_records(dataset, "train")
    val_records = data_module.split_records(dataset, "val")
    if class_weights is None:
        class_weights = detector_class_weights(dataset, train_records)
    class_weights = [float(w) for w in class_weights]
    log.info("class weights %s", class_weights)
    with mixed_precision_policy(mixed_precision):
        model = FCN(weights=init, filters=filters)
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
