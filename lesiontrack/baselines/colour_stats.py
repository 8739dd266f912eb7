"""Colour-statistics malignancy classifier: the reference the second stage must beat.

Each lesion is described by simple statistics of its own pixels: the lesion's box is resized
to ``size`` x ``size`` (24 px by default) and the pixels inside the box's inscribed ellipse
give, for each of CIE L*, a*, b* and HSV hue, saturation and value, the mean, standard
deviation and 10th / 50th / 90th percentiles, plus the mean absolute Laplacian of L* (texture
energy): 31 numbers. A gradient-boosted tree ensemble (scikit-learn
``HistGradientBoostingClassifier``, class-balanced) maps them to P(malignant).

Hue is measured from 270 degrees (hue + 90, modulo 360), so the reds and browns of skin and
lesions (hue near 0-40 degrees) do not wrap around.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass

import cv2
import numpy as np

from synth.io import InputError, atomic_path

SIZE = 24
PERCENTILES = (10, 50, 90)
CHANNELS = ("L", "a", "b", "hue", "saturation", "value")
FEATURE_NAMES = tuple(f"{channel}_{stat}" for channel in CHANNELS
                      for stat in ("mean", "std", *(f"p{p}" for p in PERCENTILES))) + ("laplacian",)


def ellipse_mask(size):
    """bool (size, size): the ellipse inscribed in the square (pixel centres inside)."""
    centre = (size - 1) / 2.0
    yy, xx = np.mgrid[:size, :size]
    radius = size / 2.0
    return (xx - centre) ** 2 + (yy - centre) ** 2 <= radius ** 2


def colour_features(crop):
    """The colour statistics of a lesion crop.

    Parameters
    ----------
    crop : ndarray
        uint8 RGB (S, S, 3), the lesion's box resized to a square.

    Returns
    -------
    ndarray
        float64 (31,), in the order of :data:`FEATURE_NAMES`.
    """
    crop = np.asarray(crop)
    square = crop.ndim == 3 and crop.shape[2] == 3 and crop.shape[0] == crop.shape[1]
    if not square or crop.dtype != np.uint8:
        raise ValueError(f"crop must be uint8 (S, S, 3), got {crop.dtype} {crop.shape}")
    inside = ellipse_mask(crop.shape[0])
    scaled = crop.astype(np.float32) / 255.0
    lab = cv2.cvtColor(scaled, cv2.COLOR_RGB2LAB)
    hsv = cv2.cvtColor(scaled, cv2.COLOR_RGB2HSV)  # H in degrees, S and V in 0..1
    hsv[..., 0] = np.mod(hsv[..., 0] + 90.0, 360.0)
    channels = np.concatenate([lab, hsv], axis=2)[inside].astype(np.float64)  # (P, 6)
    stats = [channels.mean(0), channels.std(0), *np.percentile(channels, PERCENTILES, axis=0)]
    per_channel = np.stack(stats, axis=1).ravel()  # channel-major, as FEATURE_NAMES
    laplacian = np.abs(cv2.Laplacian(lab[..., 0], cv2.CV_32F, ksize=3))[inside].mean()
    return np.concatenate([per_channel, [laplacian]])


def lesion_features(image, boxes, *, size=SIZE):
    """float64 (N, 31) colour statistics of the lesions in ``boxes`` ([x, y, w, h]) of a photo."""
    from lesiontrack.detection.crops import crop_context

    rows = [colour_features(crop_context(image, box, size=size, context=1.0)) for box in boxes]
    return np.stack(rows) if rows else np.zeros((0, len(FEATURE_NAMES)))


@dataclass
class ColourStatsModel:
    """A fitted colour-statistics classifier and the crop side it expects."""

    estimator: object
    size: int = SIZE

    def predict(self, features):
        """float64 (N,) P(malignant) of float (N, 31) features."""
        features = np.asarray(features, np.float64).reshape(-1, len(FEATURE_NAMES))
        if not len(features):
            return np.zeros(0)
        return self.estimator.predict_proba(features)[:, 1]

    def score(self, image, boxes):
        """float64 (N,) P(malignant) of the lesions in ``boxes`` of a photo."""
        return self.predict(lesion_features(image, boxes, size=self.size))


def fit_colour_stats(features, malignant, *, seed=0, max_iter=300, learning_rate=0.05):
    """Fit the gradient-boosted classifier on features with class-balanced weights.

    Parameters
    ----------
    features : ndarray
        float (N, 31).
    malignant : ndarray
        bool (N,).
    seed : int
        Seeds the early-stopping split of scikit-learn.
    max_iter : int
    learning_rate : float

    Returns
    -------
    ColourStatsModel
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    malignant = np.asarray(malignant, bool)
    if malignant.all() or not malignant.any():
        raise ValueError("colour-statistics training needs benign and malignant lesions")
    estimator = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=learning_rate,
                                               class_weight="balanced", random_state=seed)
    estimator.fit(np.asarray(features, np.float64), malignant.astype(int))
    return ColourStatsModel(estimator)


def train_colour_stats(dataset, *, split="train", seed=0, size=SIZE):
    """Fit the classifier on the blended lesions (labels 1 and 2) of a dataset's split.

    Parameters
    ----------
    dataset : path-like
        Synthesized dataset root.
    split : str
    seed : int
    size : int
        Crop side in pixels.

    Returns
    -------
    ColourStatsModel
    """
    from pathlib import Path

    from lesiontrack.detection.crops import known_lesions
    from synth.io import read_image, read_manifest

    root = Path(dataset)
    features, labels = [], []
    for record in read_manifest(root):
        if record.get("split") != split:
            continue
        lesions = known_lesions(record)
        if not lesions:
            continue
        image = read_image(root / record["image"])
        features.append(lesion_features(image, [lesion["bbox"] for lesion in lesions], size=size))
        labels += [bool(lesion["malignant"]) for lesion in lesions]
    if not labels:
        raise InputError(f"{root}: no lesion with a known diagnosis in the {split} split")
    model = fit_colour_stats(np.concatenate(features), np.asarray(labels), seed=seed)
    model.size = size
    return model


def save_colour_stats(model: ColourStatsModel, path):
    """Write the model with pickle, atomically (load only files you made yourself)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(pickle.dumps({"format": "lesiontrack-colour-stats", "version": 1,
                                      "size": model.size, "estimator": model.estimator}))


def load_colour_stats(path) -> ColourStatsModel:
    """Read a model written by :func:`save_colour_stats`; InputError naming the file."""
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle)  # noqa: S301 - the project's own model files
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as error:
        raise InputError(f"{path}: unreadable colour-statistics model ({error})") from None
    if not isinstance(data, dict) or data.get("format") != "lesiontrack-colour-stats":
        raise InputError(f"{path}: not a colour-statistics model")
    return ColourStatsModel(data["estimator"], int(data["size"]))
