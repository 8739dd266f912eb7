"""Detector loss: class-weighted cross-entropy plus an optional soft Dice on the lesion classes.

Li, Esteva et al. 2016 (sec. 4) train the FCN with a per-pixel softmax cross-entropy. Two
imbalances make the plain mean a poor objective here: background covers almost every pixel of
a body photo, and malignant lesions outnumber benign ones in PAD-UFES-20 (531 of 703). Each
pixel's term is therefore weighted by its class (eq. 1 below), and a soft Dice term
(Milletari et al., "V-Net", 2016, eq. 1) on the lesion classes keeps small lesions from being
drowned by the background.

Real lesions whose position is known but whose diagnosis is not (label 3, the body photos'
own moles) count as lesion for detection: their cross-entropy term is
``-log(P(benign) + P(malignant))``, which says nothing about malignancy, and they are left out
of the per-class Dice. Pixels labelled 255 (ignore) contribute to neither term.

The numpy functions are the reference; :class:`SegmentationLoss` is the same maths in
``keras.ops`` for training.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

IGNORE = 255
NUM_CLASSES = 3
# Label of a lesion of unknown diagnosis (synth.io.UNKNOWN).
UNKNOWN = 3
LESION_CLASSES = (1, 2)
EPSILON = 1e-7


def class_weights_from_labels(label_maps, *, num_classes=NUM_CLASSES, power=0.5, ignore=IGNORE):
    """Per-class weights from the pixel frequencies of training label maps.

    ``w_c = (f_c * C) ** -power``, normalised so that the pixel-weighted mean weight is 1,
    with ``f_c`` the fraction of labelled pixels of class ``c``. ``power=1`` is plain inverse
    frequency ("balanced"); the default square root tempers the 100:1 background ratio of body
    photos. Classes absent from the labels get weight 1.

    Parameters
    ----------
    label_maps : iterable of ndarray
        uint8 label maps (any shapes); 0..num_classes-1 or ``ignore``.
    num_classes : int
    power : float
        Exponent of the inverse frequency.
    ignore : int

    Returns
    -------
    ndarray
        float32 (num_classes,).
    """
    counts = np.zeros(num_classes, np.float64)
    for labels in label_maps:
        labels = np.asarray(labels).ravel()
        counts += np.bincount(labels[labels != ignore], minlength=256)[:num_classes]
    return class_weights_from_counts(counts, power=power)


def class_weights_from_counts(counts, *, power=0.5):
    """Weights of :func:`class_weights_from_labels` from per-class pixel counts (C,)."""
    counts = np.asarray(counts, np.float64)
    present = counts > 0
    weights = np.ones(counts.shape, np.float64)
    if present.sum() == 0:
        return weights.astype(np.float32)
    frequency = counts[present] / counts.sum()
    weights[present] = (frequency * counts.size) ** -power
    # Pixel-weighted mean of 1 keeps the loss scale (and the learning rate) comparable.
    weights[present] /= (weights[present] * frequency).sum()
    return weights.astype(np.float32)


def _unknown_weight(weights):
    """Weight of label 3 when only the 3 class weights are given: their lesion mean."""
    weights = np.asarray(weights, np.float64)
    return weights if weights.size > UNKNOWN else np.append(weights, weights[1:3].mean())


def weighted_cross_entropy(probabilities, labels, *, class_weights=None, ignore=IGNORE,
                           unknown=UNKNOWN):
    """Class-weighted softmax cross-entropy, ignoring ``ignore`` pixels (numpy reference).

    ``L = sum_i w[y_i] * l_i / sum_i w[y_i]`` over labelled pixels i (eq. 1), with
    ``l_i = -log p_i[y_i]`` for the classes 0..C-1 and, for a lesion of unknown diagnosis
    (label ``unknown``), ``l_i = -log(p_i[1] + p_i[2])``: it counts as lesion for detection
    and says nothing about malignancy.

    Parameters
    ----------
    probabilities : ndarray
        float (..., C) softmax outputs (C = 3: background, benign, malignant).
    labels : ndarray
        integer (...), same leading shape; values 0..C-1, ``unknown`` or ``ignore``.
    class_weights : array-like, optional
        (C,) or (C + 1,) weights by label value (entry C for ``unknown``; when absent the
        mean of the benign and malignant weights); default all ones.

    Returns
    -------
    float
        0 when no pixel is labelled.
    """
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels).astype(np.int64)
    num_classes = probabilities.shape[-1]
    weights = _unknown_weight(np.ones(num_classes) if class_weights is None else class_weights)
    valid = labels != ignore
    if not valid.any():
        return 0.0
    target = labels[valid]
    p = probabilities[valid]
    known = target != unknown
    picked = np.empty(target.shape, np.float64)
    picked[known] = np.take_along_axis(p[known], target[known][:, None], axis=1)[:, 0]
    picked[~known] = p[~known][:, LESION_CLASSES].sum(axis=1)
    pixel_weights = weights[target]
    losses = -np.log(np.clip(picked, EPSILON, 1.0))
    return float((pixel_weights * losses).sum() / max(pixel_weights.sum(), EPSILON))


def soft_dice_loss(probabilities, labels, *, classes=LESION_CLASSES, smooth=1.0, ignore=IGNORE,
                   unknown=UNKNOWN):
    """``1 - mean_c (2 sum p_c g_c + s) / (sum p_c + sum g_c + s)`` over lesion classes.

    Sums run over all labelled pixels of the batch but those of lesions of unknown diagnosis
    (Milletari et al. 2016, eq. 1, with additive smoothing ``s`` so that a class absent from
    both prediction and labels scores 1).

    Parameters
    ----------
    probabilities : ndarray
        float (..., C).
    labels : ndarray
        integer (...).
    classes : sequence of int
        Classes the Dice is averaged over.
    smooth : float

    Returns
    -------
    float
    """
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels).astype(np.int64)
    valid = (labels != ignore) & (labels != unknown)
    scores = []
    for c in classes:
        p = probabilities[..., c][valid]
        g = (labels[valid] == c).astype(np.float64)
        scores.append((2.0 * (p * g).sum() + smooth) / (p.sum() + g.sum() + smooth))
    return float(1.0 - np.mean(scores))


def segmentation_loss(probabilities, labels, *, class_weights=None, dice_weight=0.5,
                      classes=LESION_CLASSES, smooth=1.0, ignore=IGNORE):
    """Weighted cross-entropy + ``dice_weight`` x soft Dice (numpy reference of the loss)."""
    loss = weighted_cross_entropy(probabilities, labels, class_weights=class_weights, ignore=ignore)
    if dice_weight:
        loss += dice_weight * soft_dice_loss(probabilities, labels, classes=classes,
                                             smooth=smooth, ignore=ignore)
    return loss


@keras.saving.register_keras_serializable(package="lesiontrack")
class SegmentationLoss(keras.losses.Loss):
    """Keras form of :func:`segmentation_loss`.

    ``y_true``: integer labels (B, H, W) or (B, H, W, 1), 3 = lesion of unknown diagnosis,
    255 = ignore; ``y_pred``: softmax probabilities (B, H, W, C). ``class_weights``: (C,) or
    (C + 1,) by label value, as :func:`weighted_cross_entropy`. Returns the scalar loss of the
    batch.
    """

    def __init__(self, class_weights=None, *, dice_weight=0.5, classes=LESION_CLASSES,
                 smooth=1.0, ignore=IGNORE, num_classes=NUM_CLASSES, unknown=UNKNOWN,
                 name="segmentation_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = [float(w) for w in (class_weights if class_weights is not None
                                                  else np.ones(num_classes))]
        self.unknown = int(unknown)
        self.dice_weight = float(dice_weight)
        self.classes = tuple(int(c) for c in classes)
        self.smooth = float(smooth)
        self.ignore = int(ignore)
        self.num_classes = int(num_classes)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == len(y_pred.shape):
            labels = ops.squeeze(labels, -1)
        unknown = ops.cast(ops.equal(labels, self.unknown), "float32")
        known = ops.logical_and(ops.not_equal(labels, self.ignore),
                                ops.not_equal(labels, self.unknown))
        valid = ops.cast(known, "float32")
        safe = ops.where(known, labels, 0)
        onehot = ops.one_hot(safe, self.num_classes) * valid[..., None]
        weights = _unknown_weight(self.class_weights).astype(np.float32)
        pixel_weights = (ops.sum(onehot * ops.convert_to_tensor(weights[:self.num_classes]), axis=-1)
                         + unknown * float(weights[self.num_classes]))
        log_p = ops.log(ops.clip(y_pred, EPSILON, 1.0))
        p_lesion = ops.sum(ops.take(y_pred, list(LESION_CLASSES), axis=-1), axis=-1)
        cross_entropy = (-ops.sum(onehot * log_p, axis=-1)
                         - unknown * ops.log(ops.clip(p_lesion, EPSILON, 1.0)))
        loss = ops.sum(pixel_weights * cross_entropy) / ops.maximum(ops.sum(pixel_weights), EPSILON)
        if self.dice_weight:
            scores = []
            for c in self.classes:
                p = y_pred[..., c] * valid
                g = onehot[..., c]
                scores.append((2.0 * ops.sum(p * g) + self.smooth)
                              / (ops.sum(p) + ops.sum(g) + self.smooth))
            loss = loss + self.dice_weight * (1.0 - ops.mean(ops.stack(scores)))
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(class_weights=self.class_weights, dice_weight=self.dice_weight,
                      classes=list(self.classes), smooth=self.smooth, ignore=self.ignore,
                      num_classes=self.num_classes, unknown=self.unknown)
        return config
