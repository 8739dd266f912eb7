"""Sliding-window lesion classifier with non-maximum suppression.

The baseline of Li, Esteva et al. 2016 (fig. 4, bottom row): square windows of several sizes
slide over the photo, each is classified as background, benign or malignant from hand-made
colour and texture features, and overlapping positive windows are merged by non-maximum
suppression. Its output uses the same lesion records as
:func:`lesiontrack.detection.detect.detect`.

Features of a window of side ``s`` centred at a pixel (all from box filters, i.e. integral
images, so every window of one size costs a few full-image passes):

* CIE Lab mean and standard deviation inside the window;
* Lab contrast of the window against the ring around it (a window of side ``2 s`` minus the
  window) and of the central half of the window against the window;
* mean gradient magnitude inside the window and on the ring, and their difference;
* the standard deviation of L on the ring, and log ``s``.

The classifier is multinomial logistic regression on the standardised features and their
squares, fitted by L-BFGS with class-balanced weights and an L2 penalty.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import minimize

from lesiontrack.imaging import check_image
from synth.io import InputError, atomic_path, read_image, read_manifest, present_lesions
from synth.progress import progress_bar

log = logging.getLogger(__name__)

WINDOW_SIZES = (16, 24, 32, 48, 64)
FEATURE_VERSION = 1
NUM_CLASSES = 3  # background, benign, malignant (synth.io label values)
FEATURE_NAMES = (
    "L_in", "a_in", "b_in", "L_std", "a_std", "b_std",
    "L_ring_contrast", "a_ring_contrast", "b_ring_contrast",
    "L_centre_contrast", "a_centre_contrast", "b_centre_contrast",
    "grad_in", "grad_ring", "grad_contrast", "L_ring_std", "log_size",
)


@dataclass(frozen=True)
class SlidingWindowModel:
    """A trained window classifier.

    Attributes
    ----------
    mean, scale : ndarray
        float64 (F,), standardisation of the raw window features.
    weights : ndarray
        float64 (2 F, 3), softmax weights on [standardised features, their squares].
    bias : ndarray
        float64 (3,).
    window_sizes : tuple of int
        Window sides (pixels) seen in training; the default sizes of detection.
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    window_sizes: tuple = WINDOW_SIZES

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (N, 3) float64 of raw features (N, F)."""
        return _softmax(_design(features, self.mean, self.scale) @ self.weights + self.bias)


# --------------------------------------------------------------------------- features


def _lab(image: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 CIE Lab (L in [0, 100])."""
    return cv2.cvtColor(np.asarray(image, dtype=np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _box(channels: np.ndarray, size: int) -> np.ndarray:
    """Mean over a size x size window centred at each pixel (reflected borders)."""
    return cv2.boxFilter(channels, cv2.CV_32F, (int(size), int(size)), normalize=True,
                         borderType=cv2.BORDER_REFLECT)


def _prepare(image: np.ndarray) -> np.ndarray:
    """Per-pixel channels whose window means make the features: Lab, Lab^2, |grad L|."""
    image = check_image(image, "image", min_side=1)
    lab = _lab(image)
    light = lab[:, :, 0]
    gradient = np.hypot(cv2.Sobel(light, cv2.CV_32F, 1, 0, ksize=3),
                        cv2.Sobel(light, cv2.CV_32F, 0, 1, ksize=3)) / 8.0
    return np.dstack([lab, lab * lab, gradient]).astype(np.float32)


def window_feature_maps(image: np.ndarray, *, window_size: int, prepared=None) -> np.ndarray:
    """Features of the window of side ``window_size`` centred at every pixel.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    window_size : int
        Window side in pixels.
    prepared : ndarray, optional
        Output of the private per-pixel preparation, to share across window sizes.

    Returns
    -------
    ndarray
        float32 (H, W, F) with F = ``len(FEATURE_NAMES)``.
    """
    channels = _prepare(image) if prepared is None else prepared
    size = int(window_size)
    inner = _box(channels, size)
    outer = _box(channels, 2 * size)
    centre = _box(channels[:, :, :3], max(size // 2, 1))
    # Ring mean from the two box means weighted by their areas (integral-image identity).
    ring = (outer * 4.0 - inner) / 3.0
    mean_in, square_in, grad_in = inner[:, :, :3], inner[:, :, 3:6], inner[:, :, 6]
    mean_ring, square_ring, grad_ring = ring[:, :, :3], ring[:, :, 3:6], ring[:, :, 6]
    std_in = np.sqrt(np.maximum(square_in - mean_in ** 2, 0.0))
    light_ring_std = np.sqrt(np.maximum(square_ring[:, :, 0] - mean_ring[:, :, 0] ** 2, 0.0))
    log_size = np.full(grad_in.shape, np.log(size), dtype=np.float32)
    return np.dstack([
        mean_in, std_in, mean_in - mean_ring, centre - mean_in,
        grad_in, grad_ring, grad_in - grad_ring, light_ring_std, log_size,
    ]).astype(np.float32)


def window_grid(height: int, width: int, *, window_size: int, stride_frac: float = 0.5):
    """Top-left corners of the windows of one size that fit in the image.

    Returns
    -------
    xs, ys : ndarray
        int (gw,), (gh,); the last window touches the right/bottom edge.
    """
    size = int(window_size)
    stride = max(1, int(round(size * float(stride_frac))))

    def axis(length):
        if length < size:
            return np.zeros(0, dtype=np.int64)
        starts = np.arange(0, length - size + 1, stride)
        if starts[-1] != length - size:
            starts = np.r_[starts, length - size]
        return starts.astype(np.int64)

    return axis(width), axis(height)


def _windows_by_size(image, window_sizes, stride_frac):
    """Per window size: (size, grid_x, grid_y, features) of the windows on its grid (flat)."""
    prepared = _prepare(image)
    height, width = prepared.shape[:2]
    for size in window_sizes:
        xs, ys = window_grid(height, width, window_size=size, stride_frac=stride_frac)
        if xs.size == 0 or ys.size == 0:
            continue
        maps = window_feature_maps(image, window_size=size, prepared=prepared)
        grid_x, grid_y = (grid.reshape(-1) for grid in np.meshgrid(xs, ys))
        yield size, grid_x, grid_y, maps[grid_y + size // 2, grid_x + size // 2]


def extract_windows(image: np.ndarray, *, window_sizes=WINDOW_SIZES, stride_frac: float = 0.5):
    """All windows of the given sizes on a grid, with their features.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    window_sizes : sequence of int
        Window sides in pixels.
    stride_frac : float
        Grid step as a fraction of the window side.

    Returns
    -------
    boxes : ndarray
        int64 (N, 4), [x, y, w, h] pixels.
    features : ndarray
        float32 (N, F).
    """
    all_boxes, all_features = [], []
    for size, grid_x, grid_y, features in _windows_by_size(image, window_sizes, stride_frac):
        all_features.append(features)
        all_boxes.append(np.stack([grid_x, grid_y, np.full_like(grid_x, size),
                                   np.full_like(grid_x, size)], axis=1))
    if not all_boxes:
        return np.zeros((0, 4), np.int64), np.zeros((0, len(FEATURE_NAMES)), np.float32)
    return np.concatenate(all_boxes), np.concatenate(all_features)


# --------------------------------------------------------------------------- classifier


def _design(features, mean, scale):
    """Standardised features and their squares (a mild non-linearity)."""
    z = (np.asarray(features, dtype=np.float64) - mean) / scale
    z = np.clip(z, -8.0, 8.0)
    return np.concatenate([z, z * z - 1.0], axis=1)


def _softmax(logits):
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_softmax_regression(design: np.ndarray, labels: np.ndarray, *, l2: float = 1e-3,
                           max_iter: int = 300):
    """Multinomial logistic regression with class-balanced weights, by L-BFGS.

    Parameters
    ----------
    design : ndarray
        float (N, D).
    labels : ndarray
        int (N,) in [0, 3).
    l2 : float
        Penalty on the weights (not the bias), per sample.
    max_iter : int

    Returns
    -------
    weights : ndarray
        float64 (D, 3).
    bias : ndarray
        float64 (3,).
    """
    design = np.asarray(design, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, dims = design.shape
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    # Balanced weights: every present class carries the same total weight.
    class_weight = np.where(counts > 0, n / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0)
    sample_weight = class_weight[labels] / n
    onehot = np.eye(NUM_CLASSES)[labels]

    def objective(theta):
        weights = theta[: dims * NUM_CLASSES].reshape(dims, NUM_CLASSES)
        bias = theta[dims * NUM_CLASSES:]
        logits = design @ weights + bias
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1, keepdims=True))
        log_prob = logits - log_norm
        loss = -np.sum(sample_weight * np.sum(onehot * log_prob, axis=1))
        loss += 0.5 * l2 * np.sum(weights ** 2)
        residual = (np.exp(log_prob) - onehot) * sample_weight[:, None]
        grad_w = design.T @ residual + l2 * weights
        grad_b = residual.sum(axis=0)
        return loss, np.concatenate([grad_w.reshape(-1), grad_b])

    theta0 = np.zeros(dims * NUM_CLASSES + NUM_CLASSES)
    result = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                      options={"maxiter": int(max_iter)})
    theta = result.x
    return theta[: dims * NUM_CLASSES].reshape(dims, NUM_CLASSES), theta[dims * NUM_CLASSES:]


def _nearest_size(extent: float, window_sizes) -> int:
    """The window size closest (in log scale) to a lesion extent with some surround."""
    sizes = np.asarray(window_sizes, dtype=np.float64)
    return int(sizes[np.argmin(np.abs(np.log(sizes) - np.log(max(extent, 1.0) * 1.25)))])


def sample_training_windows(image, lesions, *, rng, window_sizes=WINDOW_SIZES,
                            positives_per_lesion=6, negatives=60):
    """Labelled windows of one image: jittered windows on lesions, random ones elsewhere.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    lesions : sequence of dict
        Manifest lesion records with ``bbox`` [x, y, w, h] and ``label`` (1 benign,
        2 malignant) or ``malignant``.
    rng : numpy.random.Generator
    window_sizes : sequence of int
    positives_per_lesion, negatives : int
        Windows drawn per lesion and per image.

    Returns
    -------
    features : ndarray
        float32 (N, F).
    labels : ndarray
        int64 (N,), 0 background, 1 benign, 2 malignant.
    """
    prepared = _prepare(image)
    height, width = prepared.shape[:2]
    boxes = np.asarray([lesion["bbox"] for lesion in lesions], dtype=np.float64).reshape(-1, 4)
    classes = [int(lesion.get("label", 2 if lesion.get("malignant") else 1)) for lesion in lesions]
    wanted = {}  # window size -> list of (cx, cy, label)
    for box, label in zip(boxes, classes):
        x, y, w, h = box
        centre = np.array([x + w / 2.0, y + h / 2.0])
        primary = _nearest_size(max(w, h), window_sizes)
        index = list(window_sizes).index(primary)
        neighbours = [window_sizes[i] for i in (index - 1, index, index + 1)
                      if 0 <= i < len(window_sizes)]
        for _ in range(positives_per_lesion):
            size = int(rng.choice(neighbours))
            # Jitter within a quarter window so every positive still holds the lesion centre.
            cx, cy = centre + rng.uniform(-0.25, 0.25, 2) * min(size, max(w, h, 4))
            wanted.setdefault(size, []).append((cx, cy, label))
    grown = boxes.copy()
    grown[:, :2] -= grown[:, 2:] * 0.25
    grown[:, 2:] *= 1.5
    drawn = 0
    for _ in range(negatives * 4):
        if drawn >= negatives:
            break
        size = int(rng.choice(window_sizes))
        if size > min(height, width):
            continue
        cx = rng.uniform(size / 2.0, width - size / 2.0)
        cy = rng.uniform(size / 2.0, height - size / 2.0)
        inside = ((cx >= grown[:, 0]) & (cx <= grown[:, 0] + grown[:, 2])
                  & (cy >= grown[:, 1]) & (cy <= grown[:, 1] + grown[:, 3]))
        if inside.any():
            continue
        wanted.setdefault(size, []).append((cx, cy, 0))
        drawn += 1
    features, labels = [], []
    for size, points in wanted.items():
        maps = window_feature_maps(image, window_size=size, prepared=prepared)
        points = np.asarray(points, dtype=np.float64)
        cols = np.clip(np.round(points[:, 0]).astype(int), 0, width - 1)
        rows = np.clip(np.round(points[:, 1]).astype(int), 0, height - 1)
        features.append(maps[rows, cols])
        labels.append(points[:, 2].astype(np.int64))
    if not features:
        return np.zeros((0, len(FEATURE_NAMES)), np.float32), np.zeros(0, np.int64)
    return np.concatenate(features), np.concatenate(labels)


def fit_sliding_window(features, labels, *, window_sizes=WINDOW_SIZES, l2=1e-3,
                       max_iter=300) -> SlidingWindowModel:
    """Fit the window classifier on labelled window features.

    Parameters
    ----------
    features : ndarray
        float (N, F) raw window features.
    labels : ndarray
        int (N,), 0 background, 1 benign, 2 malignant.
    window_sizes : sequence of int
    l2 : float
    max_iter : int

    Returns
    -------
    SlidingWindowModel
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if features.ndim != 2 or features.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"features must be (N, {len(FEATURE_NAMES)}), got {features.shape}")
    if len(features) != len(labels) or len(np.unique(labels)) < 2:
        raise ValueError("need labelled windows of at least two classes")
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    weights, bias = fit_softmax_regression(_design(features, mean, scale), labels, l2=l2,
                                           max_iter=max_iter)
    return SlidingWindowModel(mean=mean, scale=scale, weights=weights, bias=bias,
                              window_sizes=tuple(int(s) for s in window_sizes))


def train_sliding_window(dataset_root, *, split="train", rng, window_sizes=WINDOW_SIZES,
                         limit=None, positives_per_lesion=6, negatives_per_image=60,
                         l2=1e-3, max_iter=300) -> SlidingWindowModel:
    """Train the baseline on a synthesized dataset's t0 images.

    Parameters
    ----------
    dataset_root : path-like
        Dataset folder (``manifest.jsonl``, ``images/``).
    split : str
        Manifest split to train on.
    rng : numpy.random.Generator
        Draws the training windows.
    window_sizes : sequence of int
    limit : int, optional
        Use at most this many samples.
    positives_per_lesion, negatives_per_image : int
    l2 : float
    max_iter : int

    Returns
    -------
    SlidingWindowModel
    """
    root = Path(dataset_root)
    records = [r for r in read_manifest(root) if r.get("split") == split]
    if limit is not None:
        records = records[: int(limit)]
    if not records:
        raise InputError(f"{root}: no samples in split '{split}'")
    features, labels = [], []
    for record in progress_bar(records, desc="baseline windows", unit="image", leave=False):
        image = read_image(root / record["image"])
        window_features, window_labels = sample_training_windows(
            image, present_lesions(record), rng=rng, window_sizes=window_sizes,
            positives_per_lesion=positives_per_lesion, negatives=negatives_per_image)
        features.append(window_features)
        labels.append(window_labels)
    features, labels = np.concatenate(features), np.concatenate(labels)
    counts = np.bincount(labels, minlength=NUM_CLASSES).tolist()
    if np.count_nonzero(counts) < 2:
        raise InputError(f"{root}: the {len(records)} samples of split '{split}' give windows "
                         f"of one class only ({counts} per class); need lesions and skin")
    log.info("training the window classifier on %d windows (%s per class)", len(labels), counts)
    return fit_sliding_window(features, labels, window_sizes=window_sizes, l2=l2,
                              max_iter=max_iter)


# --------------------------------------------------------------------------- persistence


def save_sliding_window(model: SlidingWindowModel, path) -> Path:
    """Write a model as .npz, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, kind=np.array("sliding_window"),
                     feature_version=np.array(FEATURE_VERSION), mean=model.mean,
                     scale=model.scale, weights=model.weights, bias=model.bias,
                     window_sizes=np.asarray(model.window_sizes, dtype=np.int64))
    return path


def load_sliding_window(path) -> SlidingWindowModel:
    """Read a model written by :func:`save_sliding_window`; InputError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["kind"]) != "sliding_window":
                raise InputError(f"{path}: not a sliding-window baseline model")
            if int(data["feature_version"]) != FEATURE_VERSION:
                raise InputError(f"{path}: feature version {int(data['feature_version'])}, "
                                 f"expected {FEATURE_VERSION}")
            model = SlidingWindowModel(
                mean=data["mean"].astype(np.float64), scale=data["scale"].astype(np.float64),
                weights=data["weights"].astype(np.float64), bias=data["bias"].astype(np.float64),
                window_sizes=tuple(int(s) for s in data["window_sizes"]))
    except InputError:
        raise
    except Exception as error:  # zip, pickle and key errors from a damaged or foreign file
        raise InputError(f"{path}: not a readable baseline model ({type(error).__name__})") \
            from None
    dims = len(FEATURE_NAMES)
    if model.mean.shape != (dims,) or model.weights.shape != (2 * dims, NUM_CLASSES):
        raise InputError(f"{path}: model arrays have unexpected shapes")
    return model


# --------------------------------------------------------------------------- detection


def non_max_suppression(boxes, scores, *, iou=0.3) -> np.ndarray:
    """Greedy non-maximum suppression.

    Parameters
    ----------
    boxes : array_like
        float (N, 4), [x, y, w, h].
    scores : array_like
        float (N,).
    iou : float
        A box is dropped when its intersection over union with a kept, higher-scoring box
        exceeds this, or when its centre lies inside that box (windows of different sizes on
        one lesion rarely overlap by much in IoU).

    Returns
    -------
    ndarray
        int64 indices of kept boxes, by descending score.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    cx, cy = x0 + boxes[:, 2] / 2.0, y0 + boxes[:, 3] / 2.0
    areas = boxes[:, 2] * boxes[:, 3]
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = np.clip(np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]), 0, None)
        height = np.clip(np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]), 0, None)
        inter = width * height
        overlap = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        centred = ((cx[rest] >= x0[best]) & (cx[rest] <= x1[best])
                   & (cy[rest] >= y0[best]) & (cy[rest] <= y1[best]))
        order = rest[(overlap <= iou) & ~centred]
    return np.asarray(keep, dtype=np.int64)


def classify_windows(image, model: SlidingWindowModel, *, window_sizes=None, stride_frac=0.5):
    """Class probabilities of every window on the grid.

    Returns
    -------
    boxes : ndarray
        int64 (N, 4), [x, y, w, h].
    probabilities : ndarray
        float64 (N, 3), background / benign / malignant.
    """
    sizes = model.window_sizes if window_sizes is None else window_sizes
    boxes, features = extract_windows(image, window_sizes=sizes, stride_frac=stride_frac)
    if len(boxes) == 0:
        return boxes, np.zeros((0, NUM_CLASSES))
    return boxes, model.predict_proba(features)


def detect_sliding_window(image, model: SlidingWindowModel, *, window_sizes=None,
                          stride_frac=0.5, threshold=0.5, nms_iou=0.3) -> list[dict]:
    """Detect lesions with the sliding-window baseline.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    model : SlidingWindowModel
    window_sizes : sequence of int, optional
        Default the model's (16, 24, 32, 48, 64).
    stride_frac : float
        Grid step as a fraction of the window side.
    threshold : float
        Minimum lesion score P(benign) + P(malignant) of a kept window.
    nms_iou : float
        Non-maximum suppression overlap.

    Returns
    -------
    list of dict
        Lesion records by descending score: ``id`` (1..n), ``bbox`` [x, y, w, h],
        ``centroid`` [x, y], ``area_px`` (window area), ``score`` (P(lesion)),
        ``malignancy`` (P(malignant) / P(lesion)) and ``label`` ('benign' or 'malignant').
    """
    boxes, probabilities = classify_windows(image, model, window_sizes=window_sizes,
                                            stride_frac=stride_frac)
    lesion = probabilities[:, 1] + probabilities[:, 2] if len(boxes) else np.zeros(0)
    candidates = np.flatnonzero(lesion >= threshold)
    kept = candidates[non_max_suppression(boxes[candidates], lesion[candidates], iou=nms_iou)]
    lesions = []
    for number, index in enumerate(kept, start=1):
        x, y, w, h = (int(v) for v in boxes[index])
        score = float(lesion[index])
        malignancy = float(probabilities[index, 2] / max(score, 1e-12))
        lesions.append({
            "id": number,
            "bbox": [x, y, w, h],
            "centroid": [x + w / 2.0, y + h / 2.0],
            "area_px": int(w * h),
            "score": score,
            "malignancy": malignancy,
            "label": "malignant" if malignancy >= 0.5 else "benign",
        })
    return lesions


def sliding_window_heatmap(image, model: SlidingWindowModel, *, window_sizes=None,
                           stride_frac=0.5) -> np.ndarray:
    """Per-pixel maximum of P(lesion) over the windows covering the pixel.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    model : SlidingWindowModel
    window_sizes : sequence of int, optional
    stride_frac : float

    Returns
    -------
    ndarray
        float32 (H, W) in [0, 1].
    """
    sizes = model.window_sizes if window_sizes is None else window_sizes
    height, width = image.shape[:2]
    heatmap = np.zeros((height, width), np.float32)
    for size, grid_x, grid_y, features in _windows_by_size(image, sizes, stride_frac):
        probabilities = model.predict_proba(features)
        # Paint each window's score at its top-left corner, then a max filter of the window
        # size (grey dilation with an anchor at the kernel corner) spreads it over the window.
        corners = np.zeros((height, width), np.float32)
        np.maximum.at(corners, (grid_y, grid_x),
                      (probabilities[:, 1] + probabilities[:, 2]).astype(np.float32))
        kernel = np.ones((size, size), np.uint8)
        spread = cv2.dilate(corners, kernel, anchor=(size - 1, size - 1),
                            borderType=cv2.BORDER_CONSTANT, borderValue=0)
        np.maximum(heatmap, spread, out=heatmap)
    return heatmap
