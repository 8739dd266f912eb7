"""Training pairs for the tracker: crops of a synthesized dataset's t0/t1 pairs.

Each training example is a pair of crops taken at the same place in both photos, with the
ground-truth forward flow and validity of that place (Li, Esteva et al. 2016, sec. 3.2: the
second visit is a known warp of the first, so dense ground truth comes for free).

Scale. The synthesizer's pairs move by 5-10 % of the image diagonal (30-70 px at 512 x 512,
tails to about 15 %). A 256-px crop at full resolution sees a motion of up to a quarter of its
side, and much of what a t0 pixel moves to lies outside the t1 crop. Each pair is therefore
first resized by a random factor in ``scale_range`` (log-uniform; 0.5 makes the whole 512-px
photo fit one 256 crop, halving the motion), which also teaches the network a range of
motion magnitudes. Pixels whose target falls outside the t1 crop are marked invalid, as the
dataset marks pixels leaving the t1 frame.

Flips are applied to both photos and the flow; a horizontal flip negates dx, a vertical flip
negates dy. A mild independent per-channel gain on each photo adds to the illumination change
the synthesizer already makes.

Optionally (``synthetic_fraction``) a share of the pairs are made on the fly from t0 images
with :mod:`synth.pairs` (random viewpoint and non-rigid warp, illumination change).

For the coarse-to-fine ``"refine"`` tracker (``coarse=True``) the coarse stage runs here as
at inference (:func:`lesiontrack.tracking.infer.coarse_flow`): DIS flow of the whole pair at its
stored size, resized with the pair like the true flow; ``image1`` becomes t1 warped back by it
and the target is the residual, true flow minus DIS flow, with the same validity. DIS runs on
the whole photo at its stored size, not on the crop or the downscaled photo, because that is
what inference sees (working size 512-800 px) and because at 256 px DIS builds a shallower
pyramid and often misses 40-px motions that it finds at 512 px.

The ``"pwc"`` tracker trains on pairs made on the fly from the dataset's t0 photos
(:func:`make_pair`: the synthesizer's viewpoint + non-rigid warp with its exact flow and
validity, and an illumination change), so the network never sees the same pair twice. Making
a pair at 512 x 512 costs about as much as a training step on one example here, so a small
pool of recent pairs is kept (:class:`PairPool`): each example is a new pair with probability
``new_fraction`` and otherwise a pool pair under a new random resize, crop, flips and gains
(:func:`augment_pair`). The motion follows a curriculum from small to large (Bengio et al.,
"Curriculum learning", ICML 2009): the transform's ``strength`` is drawn uniformly in
``[low, high(step)]``, ``high`` rising linearly from ``STRENGTH_START`` to ``STRENGTH_END``
over the first ``curriculum_steps`` steps (:func:`curriculum_high`).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np

from lesiontrack.baselines.opencv_flow import dis
from lesiontrack.imaging import resize_flow, resize_image
from synth.io import InputError, load_sample, read_image, read_manifest

log = logging.getLogger(__name__)

DEFAULT_CROP = 256
DEFAULT_SCALE_RANGE = (0.5, 1.0)
# Motion curriculum of the pairs made on the fly ("pwc" tracker).
STRENGTH_LOW = 0.1
STRENGTH_START = 0.4
STRENGTH_END = 1.3
CURRICULUM_STEPS = 1500


def pair_records(root, split=None) -> list[dict]:
    """Records of a dataset that carry a tracking pair, optionally of one split."""
    records = [r for r in read_manifest(root) if r.get("pair")]
    if split is not None:
        records = [r for r in records if r.get("split") == split]
    return records


def load_pair(root, record) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """image0, image1 uint8 (H, W, 3), flow float32 (H, W, 2), valid bool (H, W) of a record."""
    sample = load_sample(root, record, pair=True)
    image1 = sample["image1"]
    if image1.shape != sample["image"].shape:
        raise InputError(f"{root}: pair {record['id']} has photos of different sizes")
    return sample["image"], image1, sample["flow"], sample["valid"]


def make_pair(image0, *, rng, strength):
    """A t1 photo, exact flow and validity made from ``image0`` by a random visit change.

    Parameters
    ----------
    image0 : ndarray, uint8 (H, W, 3)
    rng : numpy.random.Generator
    strength : float
        Amplitude of :func:`synth.pairs.motion.random_pair_transform` (1: median motion
        5-9 % of the diagonal).

    Returns
    -------
    image1 : ndarray, uint8 (H, W, 3)
    flow : ndarray, float32 (H, W, 2)
        Forward flow t0 -> t1, channel 0 = dx.
    valid : ndarray, bool (H, W)
    """
    from synth.pairs import change_illumination, random_pair_transform, warp_image

    height, width = image0.shape[:2]
    transform = random_pair_transform((width, height), rng=rng, strength=float(strength))
    image1 = warp_image(image0, transform)
    image1, _ = change_illumination(image1, rng=rng)
    return image1, transform.flow().astype(np.float32), np.asarray(transform.valid(), bool)


def synthetic_pair(image0, *, rng, strength_range=(0.4, 1.3)):
    """:func:`make_pair` with a strength drawn uniformly in ``strength_range``."""
    return make_pair(image0, rng=rng, strength=rng.uniform(*strength_range))


def pack_target(flow, valid) -> np.ndarray:
    """Flow float (..., 2) and validity (...) as one float32 training target (..., 3).

    The target layout of :class:`lesiontrack.tracking.losses.RobustEPELoss` and
    :class:`lesiontrack.tracking.losses.EndPointError`: dx, dy, valid (0/1).
    """
    return np.concatenate([np.asarray(flow, np.float32),
                           np.asarray(valid, np.float32)[..., None]], -1)


def resize_pair(image0, image1, flow, valid, factor):
    """Resize a pair and its flow by ``factor`` (flow values scale with the image)."""
    if factor == 1.0:
        return image0, image1, flow, valid
    height, width = image0.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    image0, image1 = resize_image(image0, size), resize_image(image1, size)
    flow = resize_flow(flow, size)
    # A resized pixel is valid only where all the pixels it mixes were valid.
    valid = cv2.resize(valid.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) > 0.999
    return image0, image1, flow, valid


def augment_pair(image0, image1, flow, valid, *, rng, crop=DEFAULT_CROP,
                 scale_range=DEFAULT_SCALE_RANGE, flip=True, gain_sigma=0.05, coarse=False):
    """Random resize, crop at the same place in both photos, consistent flips, gain jitter.

    Parameters
    ----------
    image0, image1 : ndarray, uint8 (H, W, 3)
    flow : ndarray, float32 (H, W, 2)
    valid : ndarray, bool (H, W)
    rng : numpy.random.Generator
    crop : int
        Side of the square crop; photos smaller than that (after resizing) are padded by
        reflection, with the padding invalid.
    scale_range : (float, float)
        Log-uniform resize factor range (see module docstring); (1, 1) disables it.
    flip : bool
        Random horizontal and vertical flips.
    gain_sigma : float
        Per-photo, per-channel log-gain ~ N(0, sigma).
    coarse : bool
        Replace ``image1`` by t1 warped back by the DIS flow of the pair (computed before
        resizing) and return the residual ``flow - DIS flow`` (the ``"refine"`` tracker;
        module docstring).

    Returns
    -------
    image0, image1 : ndarray, uint8 (crop, crop, 3)
    flow : ndarray, float32 (crop, crop, 2)
        The true flow, or its residual to the DIS flow with ``coarse``.
    valid : ndarray, bool (crop, crop)
    """
    low, high = scale_range
    factor = float(math.exp(rng.uniform(math.log(low), math.log(high)))) if high > low else float(low)
    prior = None
    if coarse:
        prior = dis(image0, image1)
    image0, image1, flow, valid = resize_pair(image0, image1, flow, valid, factor)
    if prior is not None and prior.shape[:2] != flow.shape[:2]:
        prior = resize_flow(prior, flow.shape[1::-1])
    height, width = image0.shape[:2]
    if height < crop or width < crop:
        pad = ((0, max(0, crop - height)), (0, max(0, crop - width)))
        image0 = np.pad(image0, pad + ((0, 0),), mode="reflect")
        image1 = np.pad(image1, pad + ((0, 0),), mode="reflect")
        flow = np.pad(flow, pad + ((0, 0),))
        valid = np.pad(valid, pad)
        if prior is not None:
            prior = np.pad(prior, pad + ((0, 0),))
        height, width = image0.shape[:2]
    if prior is not None:
        from synth.pairs.warp import warp_backward

        image1 = warp_backward(image1, prior)  # as lesiontrack.tracking.infer.coarse_flow
    top = int(rng.integers(0, height - crop + 1))
    left = int(rng.integers(0, width - crop + 1))
    window = (slice(top, top + crop), slice(left, left + crop))
    image0, image1 = image0[window], image1[window]
    flow, valid = flow[window].copy(), valid[window].copy()
    # Targets outside the t1 crop cannot be seen: invalid, like pixels leaving the t1 frame.
    ys, xs = np.mgrid[0:crop, 0:crop].astype(np.float32)
    tx, ty = xs + flow[..., 0], ys + flow[..., 1]
    valid &= (tx >= 0) & (tx <= crop - 1) & (ty >= 0) & (ty <= crop - 1)
    if prior is not None:
        # Flips below act on the residual as on the flow (both negate one component).
        flow = flow - prior[window]
    if flip and rng.random() < 0.5:
        image0, image1, flow, valid = image0[:, ::-1], image1[:, ::-1], flow[:, ::-1], valid[:, ::-1]
        flow = flow * np.array([-1, 1], np.float32)
    if flip and rng.random() < 0.5:
        image0, image1, flow, valid = image0[::-1], image1[::-1], flow[::-1], valid[::-1]
        flow = flow * np.array([1, -1], np.float32)
    if gain_sigma:
        image0 = _gain(image0, rng, gain_sigma)
        image1 = _gain(image1, rng, gain_sigma)
    return (np.ascontiguousarray(image0), np.ascontiguousarray(image1),
            np.ascontiguousarray(flow, np.float32), np.ascontiguousarray(valid))


def _gain(image, rng, sigma):
    """Multiply each channel by exp(N(0, sigma))."""
    gains = np.exp(rng.normal(0.0, sigma, 3)).astype(np.float32)
    return np.clip(image.astype(np.float32) * gains + 0.5, 0, 255).astype(np.uint8)


def iterate_examples(root, records, *, seed, crop=DEFAULT_CROP, scale_range=DEFAULT_SCALE_RANGE,
                     flip=True, synthetic_fraction=0.0, cache_size=64, coarse=False):
    """Endless stream of augmented examples ``(image0, image1, target)``.

    ``target`` is float32 (crop, crop, 3): dx, dy, valid. Records are shuffled each pass with
    ``np.random.default_rng(seed)``; a few recent pairs are kept decoded (``cache_size``).
    With ``coarse`` (the ``"refine"`` tracker) ``image1`` is warped back by the DIS flow
    and dx, dy are the residual to that flow (:func:`augment_pair`).
    """
    if not records:
        raise InputError(f"{root}: no tracking pairs to train on")
    rng = np.random.default_rng(seed)
    cache: dict[str, tuple] = {}
    while True:
        for index in rng.permutation(len(records)):
            record = records[index]
            if synthetic_fraction and rng.random() < synthetic_fraction:
                image0 = read_image(Path(root) / record["image"])
                image1, flow, valid = synthetic_pair(image0, rng=rng)
                pair = (image0, image1, flow, valid)
            else:
                pair = cache.get(record["id"])
                if pair is None:
                    pair = load_pair(root, record)
                    if cache_size > 0:
                        if len(cache) >= cache_size:
                            cache.pop(next(iter(cache)))
                        cache[record["id"]] = pair
            image0, image1, flow, valid = augment_pair(*pair, rng=rng, crop=crop,
                                                       scale_range=scale_range, flip=flip,
                                                       coarse=coarse)
            yield image0, image1, pack_target(flow, valid)


def make_dataset(root, records, *, batch_size=8, seed=0, crop=DEFAULT_CROP,
                 scale_range=DEFAULT_SCALE_RANGE, flip=True, synthetic_fraction=0.0, coarse=False):
    """tf.data pipeline of batches ``({"image0", "image1"}, target)`` for ``model.fit``.

    Images are float32 (B, crop, crop, 3) in [0, 255]; targets float32 (B, crop, crop, 3).
    ``coarse``: DIS-warped ``image1`` and residual targets (:func:`iterate_examples`).
    """
    import tensorflow as tf

    def generator():
        for image0, image1, target in iterate_examples(
                root, records, seed=seed, crop=crop, scale_range=scale_range, flip=flip,
                synthetic_fraction=synthetic_fraction, coarse=coarse):
            yield {"image0": image0.astype(np.float32), "image1": image1.astype(np.float32)}, target

    signature = (
        {"image0": tf.TensorSpec((crop, crop, 3), tf.float32),
         "image1": tf.TensorSpec((crop, crop, 3), tf.float32)},
        tf.TensorSpec((crop, crop, 3), tf.float32),
    )
    dataset = tf.data.Dataset.from_generator(generator, output_signature=signature)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(2)


def curriculum_high(step, *, curriculum_steps=CURRICULUM_STEPS, start=STRENGTH_START,
                    end=STRENGTH_END) -> float:
    """Largest transform strength at training ``step``: linear from ``start`` to ``end``."""
    if curriculum_steps <= 0:
        return float(end)
    return float(start + (end - start) * min(1.0, max(0, step) / curriculum_steps))


class PairPool:
    """Pairs made on the fly, with a pool of recent ones reused under new augmentation.

    Parameters
    ----------
    root : path-like
        Dataset folder.
    records : list of dict
        Records whose t0 photos (``record["image"]``) are warped.
    rng : numpy.random.Generator
    pool_size : int
        Pairs kept for reuse.
    new_fraction : float
        Probability that an example is a new pair once the pool is full.
    """

    def __init__(self, root, records, *, rng, pool_size=32, new_fraction=0.25):
        if not records:
            raise InputError(f"{root}: no photos to make training pairs from")
        self.root, self.records, self.rng = Path(root), list(records), rng
        self.pool_size, self.new_fraction = int(pool_size), float(new_fraction)
        self.pool: list[tuple] = []

    def draw(self, high):
        """(image0, image1, flow, valid) with strength in ``[STRENGTH_LOW, high]`` when new."""
        rng = self.rng
        if len(self.pool) < self.pool_size or rng.random() < self.new_fraction:
            record = self.records[int(rng.integers(len(self.records)))]
            image0 = read_image(self.root / record["image"])
            strength = rng.uniform(min(STRENGTH_LOW, high), high)
            pair = (image0, *make_pair(image0, rng=rng, strength=strength))
            if len(self.pool) < self.pool_size:
                self.pool.append(pair)
            else:
                self.pool[int(rng.integers(self.pool_size))] = pair
            return pair
        return self.pool[int(rng.integers(len(self.pool)))]


def iterate_pwc_examples(root, records, *, seed, first_step=0, batch=8, crop=256,
                         scale_range=(0.5, 1.0), curriculum_steps=CURRICULUM_STEPS, pool_size=32,
                         new_fraction=0.25):
    """Endless stream of ``(image0, image1, target)`` crops, target (crop, crop, 3) = dx, dy, valid.

    Pairs made on the fly (:class:`PairPool`) under the motion curriculum. ``first_step`` is
    the global training step of the first batch (for the curriculum); ``seed`` may be a
    sequence (e.g. ``[seed, epoch]``).
    """
    rng = np.random.default_rng(seed)
    pool = PairPool(root, records, rng=rng, pool_size=pool_size, new_fraction=new_fraction)
    index = 0
    while True:
        high = curriculum_high(first_step + index // batch, curriculum_steps=curriculum_steps)
        image0, image1, flow, valid = augment_pair(*pool.draw(high), rng=rng, crop=crop,
                                                   scale_range=tuple(scale_range))
        index += 1
        yield image0, image1, pack_target(flow, valid)


def make_pwc_dataset(root, records, *, seed, first_step=0, batch=8, crop=256, **options):
    """tf.data batches ``({"image0", "image1"}, {output: target})`` for the multi-scale loss.

    Images float32 (B, crop, crop, 3) in [0, 255]; every output of
    :data:`lesiontrack.tracking.losses.PWC_LOSS_WEIGHTS` gets the same full-resolution target
    (B, crop, crop, 3). ``options`` go to :func:`iterate_pwc_examples`.
    """
    import tensorflow as tf

    from lesiontrack.tracking.losses import PWC_LOSS_WEIGHTS

    def generator():
        for image0, image1, target in iterate_pwc_examples(root, records, seed=seed,
                                                           first_step=first_step, batch=batch,
                                                           crop=crop, **options):
            yield image0.astype(np.float32), image1.astype(np.float32), target

    spec = tf.TensorSpec((crop, crop, 3), tf.float32)
    dataset = tf.data.Dataset.from_generator(generator, output_signature=(spec, spec, spec))
    dataset = dataset.batch(batch, drop_remainder=True)
    dataset = dataset.map(lambda a, b, y: ({"image0": a, "image1": b},
                                           {key: y for key in PWC_LOSS_WEIGHTS}))
    return dataset.prefetch(2)
