"""Training of the detector (Li, Esteva et al. 2016, sec. 4), resumable, with validation.

:func:`train_detector` plugs the detector (:mod:`lesiontrack.detection.model`), its loss
(:mod:`lesiontrack.detection.losses`) and its data (:mod:`lesiontrack.detection.data`) into the
shared loop :func:`lesiontrack.training.fit` (best checkpoint by a validation figure, by
default the lesion-level sensitivity at 1 false positive per image of
:func:`evaluate_detector`; ``.last.keras`` + ``.state.json`` for resuming, ``.csv`` log,
``.png`` curves beside ``out``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lesiontrack.metrics import class_iou, confusion_matrix, histogram_auc
from lesiontrack.training import fit, mixed_precision as mixed_precision_policy, step_size_schedule
from synth.io import IGNORE, UNKNOWN, InputError, load_sample, present_lesions, read_json

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
    from lesiontrack.detection.proposals import lesion_probability
    from lesiontrack.model_cache import graph_function

    predict = graph_function(model)
    confusion = np.zeros((3, 3), np.int64)
    positive = np.zeros(bins, np.int64)
    negative = np.zeros(bins, np.int64)
    losses = []
    for image, labels in samples:
        probabilities = np.asarray(predict(image))[0].astype(np.float32)
        losses.append(loss(probabilities, labels))
        # Lesions of unknown diagnosis are lesion pixels but have no class to be right about.
        confusion += confusion_matrix(np.where(labels == UNKNOWN, IGNORE, labels),
                                      probabilities.argmax(-1))
        valid = labels != IGNORE
        p_lesion = lesion_probability(probabilities)
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


def evaluate_detector(model, root, records, *, loss, stride, limit=None, threshold=0.5,
                      low_threshold=0.05, bins=256):
    """Validation figures of a detector on whole samples: lesions found, false positives, pixels.

    Lesion level (what selects the checkpoint): proposals of
    :func:`lesiontrack.detection.proposals.heatmap_to_lesions` down to ``low_threshold``,
    matched to the blended lesions (benign and malignant) by centroid in box
    (:func:`lesiontrack.metrics.froc`); a proposal whose centroid lies on a real lesion of
    unknown diagnosis (label 3) or an ignored pixel is neither right nor wrong and is left out.

    Parameters
    ----------
    model : keras.Model
    root : path-like
    records : list of dict
        Manifest records (the first ``limit`` are used: the same ones every epoch).
    loss : callable
        ``loss(probabilities (H, W, 3), labels (H, W)) -> float``.
    stride : int
    limit : int, optional
    threshold : float
        Operating point reported as ``sensitivity`` / ``fp_per_image`` (the default of
        ``lesiontrack detect``).
    low_threshold : float
    bins : int
        Histogram bins of P(lesion) for the pixel AUC.

    Returns
    -------
    dict
        ``sens_05fp``, ``sens_1fp``, ``sens_2fp`` (FROC), ``sensitivity`` and
        ``fp_per_image`` at ``threshold``, ``loss``, ``mean_iou`` (benign and malignant
        pixels), ``lesion_iou`` and ``auc`` (lesion, real lesions included, against
        background pixels).
    """
    from lesiontrack.metrics import froc, sensitivity_at_fp

    from lesiontrack.detection.detect import predict_heatmap
    from lesiontrack.detection.proposals import heatmap_to_lesions

    confusion = np.zeros((3, 3), np.int64)
    binary = np.zeros((2, 2), np.int64)
    positive = np.zeros(bins, np.int64)
    negative = np.zeros(bins, np.int64)
    losses, predictions, truths = [], [], []
    for record in records[:limit]:
        sample = load_sample(root, record)
        labels = sample["labels"]
        probabilities = predict_heatmap(model, sample["image"])
        losses.append(loss(probabilities, labels))
        valid = labels != IGNORE
        known = np.where(labels == UNKNOWN, IGNORE, labels)
        confusion += confusion_matrix(known, probabilities.argmax(-1))
        is_lesion = labels[valid] > 0
        predicted = probabilities[..., 0][valid] < 0.5
        binary += np.bincount(is_lesion * 2 + predicted, minlength=4).reshape(2, 2)
        p_lesion = 1.0 - probabilities[..., 0]
        index = np.clip((p_lesion[valid] * bins).astype(np.int64), 0, bins - 1)
        positive += np.bincount(index[is_lesion], minlength=bins)
        negative += np.bincount(index[~is_lesion], minlength=bins)
        lesions = heatmap_to_lesions(probabilities, threshold=low_threshold)
        centroids = np.array([l["centroid"] for l in lesions], np.float64).reshape(-1, 2)
        scores = np.array([l["score"] for l in lesions], np.float64)
        if len(lesions):
            cols = np.clip(np.round(centroids[:, 0]).astype(int), 0, labels.shape[1] - 1)
            rows = np.clip(np.round(centroids[:, 1]).astype(int), 0, labels.shape[0] - 1)
            counted = (labels[rows, cols] != IGNORE) & (labels[rows, cols] != UNKNOWN)
            centroids, scores = centroids[counted], scores[counted]
        predictions.append((centroids, scores))
        truths.append(np.array([l["bbox"] for l in present_lesions(record)
                                if l.get("label", 1) in (1, 2)], np.float64).reshape(-1, 4))
    fp, sensitivity, thresholds = froc(predictions, truths)
    at = thresholds >= threshold
    iou = class_iou(confusion)
    present = iou[1:][~np.isnan(iou[1:])]
    return {
        "loss": float(np.mean(losses)) if losses else float("nan"),
        "sens_05fp": sensitivity_at_fp(fp, sensitivity, 0.5),
        "sens_1fp": sensitivity_at_fp(fp, sensitivity, 1.0),
        "sens_2fp": sensitivity_at_fp(fp, sensitivity, 2.0),
        "sensitivity": float(sensitivity[at].max()) if at.any() else 0.0,
        "fp_per_image": float(fp[at].max()) if at.any() else 0.0,
        "mean_iou": float(present.mean()) if present.size else float("nan"),
        "lesion_iou": float(class_iou(binary)[1]),
        "auc": histogram_auc(positive, negative),
    }


def real_lesion_recall(model, bodies, names, *, threshold=0.5, margin=4.0):
    """Recall of the clear real lesions on whole body photos, and detections per photo.

    ``bodies/lesions.csv`` (``tile, x, y, radius_px, label``): a lesion labelled ``lesion``
    is found when a detection's box holds its centre or a detection's centroid lies within
    its radius + ``margin`` px (the rule of ``lesiontrack.metrics.detections_on_annotations``).

    Parameters
    ----------
    model : keras.Model
    bodies : path-like
        Body library folder.
    names : iterable of str
        Photo names (stems) to use, e.g. the validation split's body photos.
    threshold : float

    Returns
    -------
    dict
        ``real_recall`` (NaN without clear lesions) and ``real_detections`` (mean per photo).
    """
    from synth.io import list_images, read_image

    from lesiontrack.detection.detect import detect
    from lesiontrack.metrics import detections_on_annotations
    from lesiontrack.real_photos import read_lesions_csv

    bodies = Path(bodies)
    table = bodies / "lesions.csv"
    truth = read_lesions_csv(table) if table.is_file() else {}
    names = set(names)
    found = total = 0
    detections = []
    for path in list_images(bodies):
        if path.stem not in names:
            continue
        # Detection only: the second-stage grading does not change which lesions are found.
        lesions = detect(read_image(path), model=model, threshold=threshold, classifier=None)
        detections.append(len(lesions))
        clear = [(x, y, radius) for x, y, radius, is_clear in truth.get(path.stem, []) if is_clear]
        if not clear:
            continue
        on = detections_on_annotations([l["bbox"] for l in lesions],
                                       [l["centroid"] for l in lesions],
                                       [c[:2] for c in clear], [c[2] for c in clear],
                                       margin=margin)
        total += len(clear)
        found += int(on.any(axis=0).sum())
    return {"real_recall": found / total if total else float("nan"),
            "real_detections": float(np.mean(detections)) if detections else float("nan")}


def detector_class_weights(root, records, *, limit=200, power=0.5):
    """Weights (4,) of labels 0-3 from the label maps of (at most ``limit``) training records.

    Label 3 (lesion of unknown diagnosis) gets its own weight from its own frequency.
    """
    from lesiontrack.detection.losses import class_weights_from_labels

    labels = (load_sample(root, record)["labels"] for record in records[:limit])
    return class_weights_from_labels(labels, num_classes=4, power=power)


def train_detector(dataset, out, *, epochs=10, steps=100, batch=8, crop=256, seed=0, init=None,
                   learning_rate=1e-3, class_weights=None, dice_weight=0.5, lesion_bias=0.6,
                   val_crop=None, val_limit=64, monitor="sens_1fp", filters=None,
                   mixed_precision=False, hair_weight=2.0, hard_negatives=None,
                   hard_negative_bias=0.15, real_check=True, decay=None,
                   final_learning_rate=None, class_weight_power=0.5):
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
    decay : (int, int), optional
        Epochs done at the start and at the end of a cosine decay of the step size from
        ``learning_rate`` to ``final_learning_rate`` (default a twentieth of it)
        (:func:`lesiontrack.training.step_size_schedule`); constant when None.
    class_weights : sequence of float, optional
        (3,) or (4,) weights of the cross-entropy by label (entry 3: lesion of unknown
        diagnosis); default from the training labels (:func:`detector_class_weights`).
    class_weight_power : float
        Exponent of the inverse label frequency of those default weights (0: no weighting).
        The cross-entropy is a weighted mean, so a pixel the network cannot tell apart is
        predicted lesion once its odds pass the inverse weight ratio: high weights grow the
        predicted regions beyond the lesions (the proposals at P(lesion) >= 0.5 swell and merge).
    dice_weight : float
        Weight of the soft Dice term on the lesion classes.
    lesion_bias : float
        Share of crops placed around a lesion (blended or real).
    val_crop : int, optional
        Validate on centred crops of this side instead of full photos (pixel figures only,
        :func:`evaluate_segmentation`).
    val_limit : int
        Validate on at most this many "val" photos (the same ones every epoch).
    monitor : str
        Validation figure selecting the best checkpoint (higher is better), a key of
        :func:`evaluate_detector` (and of :func:`real_lesion_recall`).
    filters : sequence of int, optional
        Widths of the conv levels when not starting from ``init``.
    mixed_precision : bool
        Compute in bfloat16 (weights stay float32; the softmax head is float32); also when
        starting from a float32 ``init``.
    hair_weight : float
        Hairy samples are drawn up to ``1 + hair_weight`` times as often
        (:func:`lesiontrack.detection.data.crop_weights`).
    hard_negatives : path-like, optional
        JSON of hard negatives on the training body photos
        (``experiments/mine_hard_negatives.py``).
    hard_negative_bias : float
        Share of crops placed around a hard negative of their sample, when it has one.
    real_check : bool
        Also report the recall of the clear real lesions on the validation split's body
        photos (``real_recall``, ``real_detections``), when the dataset names its body
        library and that has a ``lesions.csv``.

    Returns
    -------
    list of dict
        The per-epoch log rows.
    """
    import keras

    from lesiontrack.detection import data as data_module
    from lesiontrack.detection.losses import SegmentationLoss, segmentation_loss
    from lesiontrack.detection.model import FCN, level_widths, model_stride

    dataset = Path(dataset)
    train_records = data_module.split_records(dataset, "train")
    val_records = data_module.split_records(dataset, "val")
    if class_weights is None:
        class_weights = detector_class_weights(dataset, train_records, power=class_weight_power)
    else:
        class_weight_power = None   # the weights were given
    class_weights = [float(w) for w in class_weights]
    log.info("class weights %s", class_weights)
    if mixed_precision and init is not None and filters is None:
        # A saved .keras model keeps its own float32 policy: rebuild under the mixed policy.
        filters = level_widths(FCN(weights=init))
    with mixed_precision_policy(mixed_precision):
        model = FCN(weights=init, filters=filters)
    stride = model_stride(model)
    if crop % stride:
        raise InputError(f"crop {crop}: must be a multiple of the model stride {stride}")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=SegmentationLoss(class_weights, dice_weight=dice_weight))

    weights = None
    if hair_weight:
        hair = data_module.record_hairiness(dataset, train_records)
        weights = data_module.crop_weights(hair, hair_weight=hair_weight)
        log.info("hairy samples (hairiness >= %.2f): %d of %d", data_module.HAIRY_FRACTION,
                 int((hair >= data_module.HAIRY_FRACTION).sum()), len(train_records))
    negatives = None
    if hard_negatives is not None:
        negatives = data_module.hard_negative_points(
            train_records, data_module.read_hard_negatives(hard_negatives))
        log.info("hard negatives inside training samples: %d", sum(len(n) for n in negatives))
    real_bodies = _validation_bodies(dataset) if real_check else None

    def make_dataset(epoch):
        rng = np.random.default_rng([seed, epoch])
        return data_module.training_dataset(dataset, train_records, count=steps * batch,
                                            crop=crop, batch=batch, rng=rng,
                                            lesion_bias=lesion_bias, weights=weights,
                                            hard_negatives=negatives,
                                            hard_negative_bias=hard_negative_bias)

    def loss(p, y):
        return segmentation_loss(p, y, class_weights=class_weights, dice_weight=dice_weight)

    def validate(model):
        if val_crop is not None:
            samples = data_module.validation_samples(dataset, val_records, stride=stride,
                                                     crop=val_crop, limit=val_limit)
            return evaluate_segmentation(model, samples, loss=loss)
        figures = evaluate_detector(model, dataset, val_records, loss=loss, stride=stride,
                                    limit=val_limit)
        if real_bodies is not None:
            figures.update(real_lesion_recall(model, *real_bodies))
        return figures

    config = {"dataset": str(dataset), "epochs": epochs, "steps": steps, "batch": batch,
              "crop": crop, "seed": seed, "init": None if init is None else str(init),
              "learning_rate": learning_rate, "class_weights": class_weights,
              "class_weight_power": class_weight_power,
              "dice_weight": dice_weight, "lesion_bias": lesion_bias,
              "mixed_precision": mixed_precision, "hair_weight": hair_weight,
              "hard_negatives": None if hard_negatives is None else str(hard_negatives),
              "hard_negative_bias": hard_negative_bias, "monitor": monitor}
    schedule, entries = step_size_schedule(learning_rate, decay, final_learning_rate)
    config.update(entries)
    _, history = fit(model, make_dataset, validate, out, epochs=epochs, steps=steps,
                     monitor=monitor, mode="max", config=config, step_size=schedule)
    return history


def _validation_bodies(dataset):
    """(body library, names of the validation split's body photos), or None.

    None (the real-photo check is skipped) when the dataset names no body library with a
    ``lesions.csv`` or puts no body photo in the val split.
    """
    from lesiontrack.real_photos import split_body_photos

    try:
        bodies = Path(read_json(Path(dataset) / "dataset.json").get("sources", {}).get("bodies") or "")
        names = split_body_photos(dataset, "val")
    except (InputError, OSError, AttributeError):
        return None
    if not (bodies / "lesions.csv").is_file():
        return None
    return bodies, names
