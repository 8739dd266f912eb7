"""Training and validation input for the detector, read from a synthesized dataset.

All random choices (which sample, where to crop, which augmentation) are drawn in numpy from an
explicit ``rng`` before any decoding, and tf.data only applies them, so a seed fixes the whole
stream whatever the parallelism. Crops are biased towards lesions (blended ones and the body
photos' own, label 3), because a uniform crop of a body photo mostly shows skin (Li, Esteva et
al. 2016, sec. 3: lesions are small against the body); towards hairy samples, and towards the
hard negatives mined from a detector's false positives on the training body photos (hair
crossings, creases, garment edges), because those are what a detector trained on plain skin
gets wrong. The photometric and scale augmentation covers what changes between two visits'
photos of the same skin: exposure, tone curve, white balance, JPEG compression, focus, scale.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from lesiontrack.imaging import pad_to_stride
from synth.io import (IGNORE, InputError, present_lesions, read_image, read_json, read_label_map,
                      read_manifest)

log = logging.getLogger(__name__)

# Augmentation ranges. Photometric: what changes between two visits' photos of the same skin
# (exposure, tone curve, white balance, JPEG compression, focus), applied to [0, 1] RGB.
CONTRAST = 0.15             # multiplicative about the mean, 1 +- this
HUE = 0.03                  # fraction of the hue circle
EXPOSURE = (0.8, 1.2)       # gain on linear-ish intensity (+-20 %)
GAMMA = (0.8, 1.25)         # log-uniform
WHITE_BALANCE = 0.08        # per-channel gain 1 +- this
JPEG_QUALITY = (60, 95)     # re-encoding quality, inclusive
JPEG_PROBABILITY = 0.6
BLUR_SIGMA = (0.3, 1.2)     # Gaussian blur (px) ...
BLUR_PROBABILITY = 0.3      # ... on this share of crops
SCALE = (0.8, 1.2)          # log-uniform zoom of the crop
# Hair: share of pixels whose black-hat response (dark thin structure) exceeds this many
# grey levels; at HAIRY_FRACTION a photo counts as fully hairy for the crop weights.
HAIR_KERNEL = 9
HAIR_CONTRAST = 12
HAIRY_FRACTION = 0.05
# Body crops are cut with this margin (fraction of the larger side) on each side before the
# body augmentation, as synth's writer does; needed to map body-photo points into samples.
BODY_MARGIN = 0.12
# Order of the per-crop parameters handed to the numpy loader.
_PARAMS = ("top", "left", "side", "flip_ud", "flip_lr", "rotate", "gain_r", "gain_g", "gain_b",
           "exposure", "gamma", "contrast", "hue", "blur", "quality")
_INTEGER_PARAMS = ("top", "left", "side", "rotate", "quality")


def split_records(root, split: str) -> list[dict]:
    """Manifest records of one split ("train", "val", "test"); InputError when empty."""
    records = [r for r in read_manifest(root) if r.get("split") == split]
    if not records:
        raise InputError(f"{Path(root)}: no samples in split {split!r}")
    return records


def hairiness(image):
    """Share of pixels covered by hair-like dark thin structures, float in [0, 1].

    Black-hat transform (closing minus image) of the grey image with a 9 px disc: hair strands
    and other dark lines thinner than the disc respond, smooth skin does not (the DullRazor
    idea, Lee et al. 1997). On the iToBoS tiles: under 0.015 on hairless skin, 0.03-0.2 on
    hairy limbs and chests.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    """
    grey = cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2GRAY)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (HAIR_KERNEL, HAIR_KERNEL))
    blackhat = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel)
    return float((blackhat > HAIR_CONTRAST).mean())


def record_hairiness(root, records):
    """Hairiness of each record: the manifest's ``hairiness`` or :func:`hairiness` of its image.

    Returns
    -------
    ndarray
        float64 (N,).
    """
    values = np.zeros(len(records))
    for k, record in enumerate(records):
        value = record.get("hairiness")
        if value is None:
            value = hairiness(read_image(Path(root) / record["image"]))
        values[k] = float(value)
    return values


def crop_weights(hair, *, hair_weight=2.0):
    """Relative chance of a record being drawn: ``1 + hair_weight * min(hair / 0.05, 1)``."""
    return 1.0 + hair_weight * np.clip(np.asarray(hair, np.float64) / HAIRY_FRACTION, 0.0, 1.0)


def body_to_sample(points, record, *, margin_fraction=BODY_MARGIN):
    """Map points of a sample's body photo into the sample (synth's body crop and augment).

    The writer resizes the body crop ``[x0, y0, w, h]`` to the sample size plus a margin on
    each side, flips it, rotates and scales it about its centre (``body.augment``) and cuts
    the sample out of the middle; this applies the same maps to points (pixel centres, as
    ``cv2.resize``).

    Parameters
    ----------
    points : array_like
        float (N, 2) [x, y] in body-photo pixels.
    record : dict
        Manifest record with ``size`` and ``body`` (``crop``, ``augment``).
    margin_fraction : float

    Returns
    -------
    points : ndarray
        float64 (N, 2) [x, y] in sample pixels (may fall outside the sample).
    scale : float
        Sample pixels per body-photo pixel.
    """
    points = np.asarray(points, np.float64).reshape(-1, 2)
    body = record["body"]
    x0, y0, crop_w, crop_h = body["crop"]
    width, height = record["size"]
    margin = int(margin_fraction * max(width, height))
    canvas_w, canvas_h = width + 2 * margin, height + 2 * margin
    u = (points[:, 0] - x0 + 0.5) * canvas_w / crop_w - 0.5
    v = (points[:, 1] - y0 + 0.5) * canvas_h / crop_h - 0.5
    augment = body.get("augment", {})
    if augment.get("flip_horizontal"):
        u = canvas_w - 1 - u
    if augment.get("flip_vertical"):
        v = canvas_h - 1 - v
    scale = float(augment.get("scale", 1.0))
    matrix = cv2.getRotationMatrix2D(((canvas_w - 1) / 2.0, (canvas_h - 1) / 2.0),
                                     float(augment.get("angle", 0.0)), scale)
    mapped = np.stack([u, v, np.ones_like(u)], axis=1) @ matrix.T
    return mapped - margin, canvas_w / crop_w * scale


def read_hard_negatives(path):
    """Hard-negative boxes per body photo from ``experiments/mine_hard_negatives.py``'s JSON.

    Returns
    -------
    dict
        Body name -> float64 (N, 4) boxes [x, y, w, h] in body-photo pixels.
    """
    data = read_json(path)
    try:
        return {name: np.asarray(entry["boxes"], np.float64).reshape(-1, 4)
                for name, entry in data["bodies"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputError(f"{path}: not a hard-negative file (needs bodies.NAME.boxes)") from None


def hard_negative_points(records, hard_negatives):
    """Centres of the hard negatives that fall inside each sample.

    Parameters
    ----------
    records : list of dict
    hard_negatives : dict
        Body name -> (N, 4) boxes, as from :func:`read_hard_negatives`.

    Returns
    -------
    list of ndarray
        Per record float64 (K, 2) [x, y] sample pixels (K may be 0).
    """
    out = []
    for record in records:
        boxes = hard_negatives.get(record.get("body", {}).get("id"))
        if boxes is None or not len(boxes) or "crop" not in record.get("body", {}):
            out.append(np.zeros((0, 2)))
            continue
        points, _ = body_to_sample(boxes[:, :2] + boxes[:, 2:] / 2, record)
        width, height = record["size"]
        inside = ((points[:, 0] >= 0) & (points[:, 0] < width)
                  & (points[:, 1] >= 0) & (points[:, 1] < height))
        out.append(points[inside])
    return out


def _lesion_centres(record):
    """Centroids [x, y] of a record's blended lesions and of the body photo's real lesions."""
    centres = [lesion["centroid"] for lesion in present_lesions(record)]
    centres += [lesion["centroid"] for lesion in record.get("real_lesions", [])
                if lesion.get("centroid") is not None]
    return centres


def sample_crops(records, *, count, crop, rng, lesion_bias=0.6, augment=True, weights=None,
                 hard_negatives=None, hard_negative_bias=0.15, scale_range=SCALE):
    """Draw crop windows and augmentation parameters.

    Parameters
    ----------
    records : list of dict
        Manifest records (``size`` [W, H], ``lesions`` and ``real_lesions`` with
        ``centroid`` [x, y]).
    count : int
        Number of crops.
    crop : int
        Crop side in pixels (after scaling).
    rng : numpy.random.Generator
    lesion_bias : float
        Probability that a crop is placed around a lesion centroid (blended or real; uniformly
        elsewhere in the crop).
    augment : bool
        When False every augmentation parameter is neutral (no scaling either).
    weights : array_like, optional
        (N,) relative chance of drawing each record (e.g. :func:`crop_weights`); uniform by
        default.
    hard_negatives : list of ndarray, optional
        Per record (K, 2) points (:func:`hard_negative_points`).
    hard_negative_bias : float
        Probability that a crop is placed around a hard negative of its record (when it has
        any and the crop is not placed around a lesion).
    scale_range : (float, float)
        Log-uniform zoom: the window side is ``crop / zoom`` before resizing to ``crop``.

    Returns
    -------
    dict of ndarray
        ``index`` int32 (count,) and one (count,) entry per loader parameter (int32 for
        positions, turns and quality, bool for flips, float32 otherwise):
        ``top``/``left``/``side`` (the window; may reach past the edges, the loader pads),
        ``flip_ud``, ``flip_lr``, ``rotate`` (quarter turns), ``gain_r/g/b`` (white
        balance), ``exposure``, ``gamma``, ``contrast``, ``hue``, ``blur`` (sigma px, 0 =
        none), ``quality`` (JPEG re-encoding, 0 = none).
    """
    num = len(records)
    if weights is None:
        index = rng.integers(0, num, size=count)
    else:
        p = np.asarray(weights, np.float64)
        index = rng.choice(num, size=count, p=p / p.sum())
    if augment:
        zoom = np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]), count))
    else:
        zoom = np.ones(count)
    side = np.maximum(np.round(crop / zoom), 8).astype(np.int64)
    placement = rng.random(count)
    top = np.zeros(count, np.int64)
    left = np.zeros(count, np.int64)
    for k, i in enumerate(index):
        width, height = records[i]["size"]
        s = int(side[k])
        centres = _lesion_centres(records[i])
        negatives = hard_negatives[i] if hard_negatives is not None else ()
        if placement[k] < lesion_bias and centres:
            cx, cy = centres[rng.integers(len(centres))]
        elif placement[k] < lesion_bias + hard_negative_bias and len(negatives):
            cx, cy = negatives[rng.integers(len(negatives))]
        else:
            cx = cy = None
        if cx is None:
            y = int(rng.integers(0, max(height - s, 0) + 1))
            x = int(rng.integers(0, max(width - s, 0) + 1))
        else:
            # Any window that contains the point, clamped to the photo.
            y = int(round(cy)) - int(rng.integers(0, s))
            x = int(round(cx)) - int(rng.integers(0, s))
        top[k] = min(max(y, 0), max(height - s, 0)) if height >= s else (height - s) // 2
        left[k] = min(max(x, 0), max(width - s, 0)) if width >= s else (width - s) // 2
    params = {"top": top, "left": left, "side": side}
    if augment:
        params.update(
            flip_ud=rng.random(count) < 0.5, flip_lr=rng.random(count) < 0.5,
            rotate=rng.integers(0, 4, size=count),
            gain_r=rng.uniform(1 - WHITE_BALANCE, 1 + WHITE_BALANCE, count),
            gain_g=np.ones(count),
            gain_b=rng.uniform(1 - WHITE_BALANCE, 1 + WHITE_BALANCE, count),
            exposure=rng.uniform(*EXPOSURE, count),
            gamma=np.exp(rng.uniform(np.log(GAMMA[0]), np.log(GAMMA[1]), count)),
            contrast=rng.uniform(1 - CONTRAST, 1 + CONTRAST, count),
            hue=rng.uniform(-HUE, HUE, count),
            blur=np.where(rng.random(count) < BLUR_PROBABILITY,
                          rng.uniform(*BLUR_SIGMA, count), 0.0),
            quality=np.where(rng.random(count) < JPEG_PROBABILITY,
                             rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, count), 0))
    else:
        params.update({name: np.zeros(count) for name in ("flip_ud", "flip_lr", "rotate", "hue",
                                                          "blur", "quality")})
        params.update({name: np.ones(count) for name in ("gain_r", "gain_g", "gain_b",
                                                         "exposure", "gamma", "contrast")})
    out = {"index": index.astype(np.int32)}
    for name in _PARAMS:
        kind = np.int32 if name in _INTEGER_PARAMS else bool if name in ("flip_ud", "flip_lr") \
            else np.float32
        out[name] = np.asarray(params[name]).astype(kind)
    return out


def augment_crop(image, labels, params, *, crop):
    """Cut, scale, turn and re-colour one crop as drawn by :func:`sample_crops` (numpy).

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3), the whole sample.
    labels : ndarray
        uint8 (H, W).
    params : dict
        One crop's parameters (keys of :func:`sample_crops` but ``index``), scalars.
    crop : int
        Output side.

    Returns
    -------
    image : ndarray
        float32 (crop, crop, 3) RGB in [0, 255].
    labels : ndarray
        uint8 (crop, crop); 255 outside the sample.
    """
    top, left, side = int(params["top"]), int(params["left"]), int(params["side"])
    image = _window(image, top, left, side, 0)
    labels = _window(labels, top, left, side, IGNORE)
    if side != crop:
        shrink = cv2.INTER_AREA if side > crop else cv2.INTER_LINEAR
        image = cv2.resize(image, (crop, crop), interpolation=shrink)
        labels = cv2.resize(labels, (crop, crop), interpolation=cv2.INTER_NEAREST)
    if params["flip_ud"]:
        image, labels = image[::-1], labels[::-1]
    if params["flip_lr"]:
        image, labels = image[:, ::-1], labels[:, ::-1]
    turns = int(params["rotate"]) % 4
    image, labels = np.rot90(image, turns), np.rot90(labels, turns)
    rgb = np.ascontiguousarray(image, np.float32) / 255.0
    # White balance and exposure act on the sensor's channels, the tone curve after them.
    rgb *= np.array([params["gain_r"], params["gain_g"], params["gain_b"]], np.float32)
    rgb *= np.float32(params["exposure"])
    rgb = np.clip(rgb, 0.0, 1.0) ** np.float32(params["gamma"])
    if params["contrast"] != 1.0:
        mean = rgb.mean()
        rgb = (rgb - mean) * np.float32(params["contrast"]) + mean
    rgb = np.clip(rgb, 0.0, 1.0)
    if params["hue"]:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0] + 360.0 * float(params["hue"])) % 360.0
        rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if params["blur"] > 0:
        rgb = cv2.GaussianBlur(rgb, (0, 0), float(params["blur"]))
    out = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if params["quality"] > 0:
        ok, encoded = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY,
                                                           int(params["quality"])])
        if ok:
            out = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
    return out.astype(np.float32), np.ascontiguousarray(labels, np.uint8)


def _read_pair(image_path, label_path):
    """Read an image and its label map with synth.io (bytes paths, as tf.numpy_function passes).

    Decoded by synth.io (OpenCV) rather than tf.io: TensorFlow's JPEG decoder differs from
    OpenCV's by several grey levels, and inference reads photos with synth.io.
    """
    image = read_image(image_path.decode())
    labels = read_label_map(label_path.decode())
    if labels.ndim != 2 or labels.shape != image.shape[:2]:
        raise InputError(f"{label_path.decode()}: label map does not match its image")
    return image, labels.astype(np.uint8)[..., None]


def _load_crop(image_path, label_path, vector, crop):
    """numpy side of :func:`training_dataset`: read a sample and make one crop."""
    image, labels = _read_pair(image_path, label_path)
    params = dict(zip(_PARAMS, vector.tolist()))
    return augment_crop(image, labels[..., 0], params, crop=int(crop))


def training_dataset(root, records, *, count, crop=256, batch=8, rng, lesion_bias=0.6,
                     augment=True, weights=None, hard_negatives=None, hard_negative_bias=0.15):
    """A finite tf.data stream of augmented random crops.

    Parameters
    ----------
    root : path-like
        Dataset folder.
    records : list of dict
        Manifest records to draw from (e.g. :func:`split_records` of "train").
    count : int
        Number of crops (``steps * batch`` for one epoch).
    crop, batch : int
    rng : numpy.random.Generator
        Fixes samples, windows and augmentation; same rng state, same stream.
    lesion_bias, augment, weights, hard_negatives, hard_negative_bias
        See :func:`sample_crops`.

    Returns
    -------
    tf.data.Dataset
        Batches of (float32 (B, crop, crop, 3) RGB in [0, 255], uint8 (B, crop, crop)
        labels, 255 = ignore); the last batch may be smaller.
    """
    root = Path(root)
    params = sample_crops(records, count=count, crop=crop, rng=rng, lesion_bias=lesion_bias,
                          augment=augment, weights=weights, hard_negatives=hard_negatives,
                          hard_negative_bias=hard_negative_bias)
    image_paths = np.array([str(root / records[i]["image"]) for i in params["index"]])
    label_paths = np.array([str(root / records[i]["labels"]) for i in params["index"]])
    vectors = np.stack([params[name] for name in _PARAMS], axis=1).astype(np.float32)

    def load(image_path, label_path, vector):
        image, labels = tf.numpy_function(_load_crop, [image_path, label_path, vector, crop],
                                          [tf.float32, tf.uint8], stateful=False)
        return tf.ensure_shape(image, (crop, crop, 3)), tf.ensure_shape(labels, (crop, crop))

    dataset = tf.data.Dataset.from_tensor_slices((image_paths, label_paths, vectors))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch).prefetch(2)


def validation_samples(root, records, *, stride, crop=None, limit=None):
    """Iterate fixed validation samples, one photo at a time, unaugmented.

    Parameters
    ----------
    root : path-like
    records : list of dict
    stride : int
        Full photos are padded (reflect image, ignore labels) to multiples of this.
    crop : int, optional
        When given, a centred crop x crop window (padded with ignore where the photo is
        smaller) instead of the full photo.
    limit : int, optional
        At most this many records (the first ones: fixed from epoch to epoch).

    Yields
    ------
    image : ndarray
        float32 (1, H', W', 3) in [0, 255].
    labels : ndarray
        uint8 (H', W'), 255 outside the photo.
    """
    from synth.io import load_sample

    for record in records[:limit]:
        sample = load_sample(root, record)
        image, labels = sample["image"], sample["labels"]
        if crop is not None:
            height, width = labels.shape
            top, left = (height - crop) // 2, (width - crop) // 2
            image = _window(image, top, left, crop, 0)
            labels = _window(labels, top, left, crop, IGNORE)
        image, _ = pad_to_stride(image, stride, mode="reflect")
        labels, _ = pad_to_stride(labels, stride, mode="constant", constant=IGNORE)
        yield image[None].astype(np.float32), labels


def _window(array, top, left, size, fill):
    """A size x size window of (H, W, ...) at (top, left), ``fill`` outside the array."""
    out = np.full((size, size) + array.shape[2:], fill, array.dtype)
    height, width = array.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size, height), min(left + size, width)
    out[y0 - top:y1 - top, x0 - left:x1 - left] = array[y0:y1, x0:x1]
    return out
