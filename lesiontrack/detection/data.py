"""Training and validation input for the detector, read from a synthesized dataset.

All random choices (which sample, where to crop, which augmentation) are drawn in numpy from an
explicit ``rng`` before any decoding, and tf.data only applies them, so a seed fixes the whole
stream whatever the parallelism. Crops are biased towards lesions, because a uniform crop of a
body photo mostly shows skin (Li, Esteva et al. 2016, sec. 3: lesions are small against the
body).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from lesiontrack.imaging import pad_to_stride
from synth.io import IGNORE, InputError, read_image, read_label_map, read_manifest, present_lesions

log = logging.getLogger(__name__)

# Augmentation ranges (applied to [0, 1] RGB).
BRIGHTNESS = 0.08   # additive
CONTRAST = 0.15     # multiplicative, 1 +- this
HUE = 0.03          # fraction of the hue circle


def split_records(root, split: str) -> list[dict]:
    """Manifest records of one split ("train", "val", "test"); InputError when empty."""
    records = [r for r in read_manifest(root) if r.get("split") == split]
    if not records:
        raise InputError(f"{Path(root)}: no samples in split {split!r}")
    return records


def sample_crops(records, *, count, crop, rng, lesion_bias=0.7, augment=True):
    """Draw crop windows and augmentation parameters.

    Parameters
    ----------
    records : list of dict
        Manifest records (``size`` [W, H] and ``lesions`` with ``centroid`` [x, y]).
    count : int
        Number of crops.
    crop : int
        Crop side in pixels.
    rng : numpy.random.Generator
    lesion_bias : float
        Probability that a crop is placed around a lesion centroid (uniformly elsewhere in
        the crop) rather than uniformly over the photo.
    augment : bool
        When False all augmentation parameters are neutral.

    Returns
    -------
    dict of ndarray
        ``index`` int32 (count,), ``top``/``left`` int32 (count,) (negative or past the edge
        where the photo is smaller than the crop; the reader pads), ``flip`` bool
        (count, 2) (up-down, left-right), ``rotate`` int32 (count,) quarter turns,
        ``brightness``, ``contrast``, ``hue`` float32 (count,).
    """
    index = rng.integers(0, len(records), size=count)
    top = np.zeros(count, np.int32)
    left = np.zeros(count, np.int32)
    near_lesion = rng.random(count) < lesion_bias
    for k, i in enumerate(index):
        width, height = records[i]["size"]
        lesions = present_lesions(records[i])
        if near_lesion[k] and lesions:
            cx, cy = lesions[rng.integers(len(lesions))]["centroid"]
            # Any window that contains the centroid, clamped to the photo.
            y = int(round(cy)) - int(rng.integers(0, crop))
            x = int(round(cx)) - int(rng.integers(0, crop))
        else:
            y = int(rng.integers(0, max(height - crop, 0) + 1))
            x = int(rng.integers(0, max(width - crop, 0) + 1))
        top[k] = min(max(y, 0), max(height - crop, 0)) if height >= crop else (height - crop) // 2
        left[k] = min(max(x, 0), max(width - crop, 0)) if width >= crop else (width - crop) // 2
    if augment:
        flip = rng.random((count, 2)) < 0.5
        rotate = rng.integers(0, 4, size=count)
        brightness = rng.uniform(-BRIGHTNESS, BRIGHTNESS, count)
        contrast = rng.uniform(1 - CONTRAST, 1 + CONTRAST, count)
        hue = rng.uniform(-HUE, HUE, count)
    else:
        flip = np.zeros((count, 2), bool)
        rotate = np.zeros(count)
        brightness = np.zeros(count)
        contrast = np.ones(count)
        hue = np.zeros(count)
    return {
        "index": index.astype(np.int32), "top": top, "left": left, "flip": flip,
        "rotate": rotate.astype(np.int32), "brightness": brightness.astype(np.float32),
        "contrast": contrast.astype(np.float32), "hue": hue.astype(np.float32),
    }


def _read_pair(image_path, label_path):
    """Read an image and its label map with synth.io (numpy side of :func:`_decode`)."""
    image = read_image(image_path.decode())
    labels = read_label_map(label_path.decode())
    if labels.ndim != 2 or labels.shape != image.shape[:2]:
        raise InputError(f"{label_path.decode()}: label map does not match its image")
    return image, labels.astype(np.uint8)[..., None]


def _decode(image_path, label_path):
    """Decode an RGB image (JPEG/PNG/...) and its uint8 label map.

    Decoded by synth.io (OpenCV) rather than tf.io: TensorFlow's JPEG decoder differs from
    OpenCV's by several grey levels, and inference reads photos with synth.io.
    """
    image, labels = tf.numpy_function(_read_pair, [image_path, label_path],
                                      [tf.uint8, tf.uint8], stateful=False)
    return tf.ensure_shape(image, (None, None, 3)), tf.ensure_shape(labels, (None, None, 1))


def _crop(image, labels, top, left, crop):
    """Cut a crop x crop window at (top, left); outside the photo: black image, ignore labels."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    pad_top, pad_left = tf.maximum(-top, 0), tf.maximum(-left, 0)
    pad_bottom = tf.maximum(top + crop - height, 0)
    pad_right = tf.maximum(left + crop - width, 0)
    paddings = [[pad_top, pad_bottom], [pad_left, pad_right], [0, 0]]
    image = tf.pad(image, paddings)
    labels = tf.pad(labels, paddings, constant_values=IGNORE)
    top, left = top + pad_top, left + pad_left
    image = image[top:top + crop, left:left + crop]
    labels = labels[top:top + crop, left:left + crop]
    return tf.ensure_shape(image, (crop, crop, 3)), tf.ensure_shape(labels, (crop, crop, 1))


def _augment(image, labels, params):
    """Apply the drawn flips, quarter turns and colour jitter (labels: geometry only)."""
    pair = tf.concat([tf.cast(image, tf.float32), tf.cast(labels, tf.float32)], axis=-1)
    pair = tf.cond(params["flip"][0], lambda: tf.image.flip_up_down(pair), lambda: pair)
    pair = tf.cond(params["flip"][1], lambda: tf.image.flip_left_right(pair), lambda: pair)
    pair = tf.image.rot90(pair, params["rotate"])
    image, labels = pair[..., :3] / 255.0, pair[..., 3:]
    image = tf.image.adjust_hue(image, params["hue"])
    image = tf.image.adjust_contrast(image, params["contrast"])
    image = tf.image.adjust_brightness(image, params["brightness"])
    image = tf.clip_by_value(image, 0.0, 1.0) * 255.0
    return image, tf.cast(labels, tf.uint8)


def training_dataset(root, records, *, count, crop=256, batch=8, rng, lesion_bias=0.7,
                     augment=True):
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
    lesion_bias : float
        See :func:`sample_crops`.
    augment : bool

    Returns
    -------
    tf.data.Dataset
        Batches of (float32 (B, crop, crop, 3) RGB in [0, 255], uint8 (B, crop, crop)
        labels, 255 = ignore); the last batch may be smaller.
    """
    root = Path(root)
    params = sample_crops(records, count=count, crop=crop, rng=rng, lesion_bias=lesion_bias,
                          augment=augment)
    image_paths = np.array([str(root / records[i]["image"]) for i in params["index"]])
    label_paths = np.array([str(root / records[i]["labels"]) for i in params["index"]])
    params = {key: value for key, value in params.items() if key != "index"}

    def load(image_path, label_path, params):
        image, labels = _decode(image_path, label_path)
        image, labels = _crop(image, labels, params["top"], params["left"], crop)
        image, labels = _augment(image, labels, params)
        return image, labels[..., 0]

    dataset = tf.data.Dataset.from_tensor_slices((image_paths, label_paths, params))
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
