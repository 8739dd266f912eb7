"""Training of the "pwc" tracker (:mod:`lesiontrack.tracking.pwc`), resumable.

* Pairs are synthesized on the fly from the dataset's t0 photos with the synthesizer's random
  pair transform (viewpoint + non-rigid warp with its exact flow and validity mask, and an
  illumination change), so the network never sees the same pair twice. Making a pair at
  512 x 512 costs about as much as a training step on one example here, so a small pool of
  recent pairs is kept (:class:`PairPool`): each example is a new pair with probability
  ``new_fraction`` and otherwise a pool pair under a new random resize, crop, flips and gains
  (:func:`lesiontrack.tracking.data.augment_pair`).
* Curriculum from small to large motion (Bengio et al., "Curriculum learning", ICML 2009):
  the transform's ``strength`` is drawn uniformly in ``[low, high(step)]``, ``high`` rising
  linearly from ``strength_start`` to ``strength_end`` over the first ``curriculum_steps``
  steps (:func:`curriculum_high`).
* Multi-scale robust end-point loss (PWC-Net, Sun et al. 2018, eq. 3, with its robust
  penalty): the generalised Charbonnier of the EPE (:mod:`lesiontrack.tracking.losses`) at
  every output of the network against the valid-weighted average of the true flow over each
  output cell (:class:`LevelRobustLoss`). PWC-Net weighs levels 1/4 .. 1/32 by 0.005, 0.01,
  0.02, 0.08 for sums over a level's pixels; as weights of per-pixel means that is 1, 0.5,
  0.25, 0.25 (:data:`LOSS_WEIGHTS`); the full-resolution output weighs 1.
* Validation on the dataset's stored val pairs (full photos): EPE and PCK at 0.01 / 0.05 /
  0.1 of the diagonal over valid pixels, with :mod:`lesiontrack.metrics`.

The loop (checkpoints, resume, CSV log) is the package's generic one.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import keras
import numpy as np
from keras import ops

from synth.io import InputError, read_image

log = logging.getLogger(__name__)

ALPHA = 0.45
EPSILON = 1e-3
# Output -> (stride, weight of its per-pixel mean loss); see the module docstring.
LOSS_WEIGHTS = {"flow": (1, 1.0), "flow4": (4, 1.0), "flow4_coarse": (4, 0.5),
                "flow8": (8, 0.5), "flow16": (16, 0.25), "flow32": (32, 0.25)}
STRENGTH_LOW = 0.1
STRENGTH_START = 0.4
STRENGTH_END = 1.3
CURRICULUM_STEPS = 1500


# --------------------------------------------------------------------------- pairs


def curriculum_high(step, *, curriculum_steps=CURRICULUM_STEPS, start=STRENGTH_START,
                    end=STRENGTH_END) -> float:
    """Largest transform strength at training ``step``: linear from ``start`` to ``end``."""
    if curriculum_steps <= 0:
        return float(end)
    return float(start + (end - start) * min(1.0, max(0, step) / curriculum_steps))


def _pair_functions():
    """(random_pair_transform, warp_image, change_illumination) of the synthesizer."""
    from synth.pairs import change_illumination, random_pair_transform, warp_image

    return random_pair_transform, warp_image, change_illumination


def make_pair(image0, *, rng, strength):
    """A t1 photo, exact flow and validity made from ``image0`` by a random visit change.

    Parameters
    ----------
    image0 : ndarray, uint8 (H, W, 3)
    rng : numpy.random.Generator
    strength : float
        Amplitude of the random pair transform (1: median motion 5-9 % of the diagonal).

    Returns
    -------
    image1 : ndarray, uint8 (H, W, 3)
    flow : ndarray, float32 (H, W, 2)
        Forward flow t0 -> t1, channel 0 = dx.
    valid : ndarray, bool (H, W)
    """
    random_pair_transform, warp_image, change_illumination = _pair_functions()
    height, width = image0.shape[:2]
    transform = random_pair_transform((width, height), rng=rng, strength=float(strength))
    image1 = warp_image(image0, transform)
    image1, _ = change_illumination(image1, rng=rng)
    return image1, transform.flow().astype(np.float32), np.asarray(transform.valid(), bool)


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


def iterate_examples(root, records, *, seed, first_step=0, batch=8, crop=256,
                     scale_range=(0.5, 1.0), curriculum_steps=CURRICULUM_STEPS, pool_size=32,
                     new_fraction=0.25):
    """Endless stream of ``(image0, image1, target)`` crops, target (crop, crop, 3) = dx, dy, valid.

    ``first_step`` is the global training step of the first batch (for the curriculum);
    ``seed`` may be a sequence (e.g. ``[seed, epoch]``).
    """
    from lesiontrack.tracking.data import augment_pair

    rng = np.random.default_rng(seed)
    pool = PairPool(root, records, rng=rng, pool_size=pool_size, new_fraction=new_fraction)
    index = 0
    while True:
        high = curriculum_high(first_step + index // batch, curriculum_steps=curriculum_steps)
        image0, image1, flow, valid = augment_pair(*pool.draw(high), rng=rng, crop=crop,
                                                   scale_range=tuple(scale_range))
        index += 1
        yield image0, image1, np.concatenate([flow, valid[..., None].astype(np.float32)], -1)


def make_dataset(root, records, *, seed, first_step=0, batch=8, crop=256, **options):
    """tf.data batches ``({"image0", "image1"}, {output: target})`` for the multi-scale loss.

    Images float32 (B, crop, crop, 3) in [0, 255]; every output of :data:`LOSS_WEIGHTS` gets
    the same full-resolution target (B, crop, crop, 3). ``options`` go to
    :func:`iterate_examples`.
    """
    import tensorflow as tf

    def generator():
        for image0, image1, target in iterate_examples(root, records, seed=seed,
                                                       first_step=first_step, batch=batch,
                                                       crop=crop, **options):
            yield image0.astype(np.float32), image1.astype(np.float32), target

    spec = tf.TensorSpec((crop, crop, 3), tf.float32)
    dataset = tf.data.Dataset.from_generator(generator, output_signature=(spec, spec, spec))
    dataset = dataset.batch(batch, drop_remainder=True)
    dataset = dataset.map(lambda a, b, y: ({"image0": a, "image1": b},
                                           {key: y for key in LOSS_WEIGHTS}))
    return dataset.prefetch(2)


# --------------------------------------------------------------------------- loss


@keras.saving.register_keras_serializable(package="lesiontrack")
class LevelRobustLoss(keras.losses.Loss):
    """Robust EPE of a flow predicted at 1/``stride`` against the full-resolution truth.

    ``y_true`` (B, H, W, 3) = dx, dy, valid; ``y_pred`` (B, H / stride, W / stride, 2) in
    full-resolution pixels. The truth is averaged over each ``stride`` x ``stride`` cell,
    weighted by validity; a cell counts when at least half its pixels are valid. Returns the
    generalised Charbonnier ``(e^2 + eps^2)^alpha`` averaged over counted cells of the batch.
    """

    def __init__(self, *, stride=1, alpha=ALPHA, epsilon=EPSILON, name=None, **kwargs):
        super().__init__(name=name or f"robust_epe_{int(stride)}", **kwargs)
        self.stride, self.alpha, self.epsilon = int(stride), float(alpha), float(epsilon)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        valid = y_true[..., 2:3]
        flow = y_true[..., :2]
        if self.stride > 1:
            size = (self.stride, self.stride)
            share = ops.average_pool(valid, size, strides=size, padding="valid")
            flow = ops.average_pool(flow * valid, size, strides=size, padding="valid") / \
                ops.maximum(share, 1e-6)
            valid = ops.cast(share >= 0.5, "float32")
        squared = ops.sum(ops.square(y_pred - flow), axis=-1)
        penalty = ops.power(squared + self.epsilon ** 2, self.alpha)
        valid = valid[..., 0]
        return ops.sum(valid * penalty) / ops.maximum(ops.sum(valid), 1.0)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride, "alpha": self.alpha,
                "epsilon": self.epsilon}


def compile_model(model, *, learning_rate=3e-4, alpha=ALPHA):
    """Compile a :func:`lesiontrack.tracking.pwc.build_pwc` model with the multi-scale loss."""
    from lesiontrack.tracking.losses import EndPointError

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, clipnorm=10.0),
        loss={key: LevelRobustLoss(stride=stride, alpha=alpha)
              for key, (stride, _) in LOSS_WEIGHTS.items()},
        loss_weights={key: weight for key, (_, weight) in LOSS_WEIGHTS.items()},
        metrics={"flow": [EndPointError()]})
    return model


# --------------------------------------------------------------------------- validation


def predict_pwc(model, image0, image1) -> np.ndarray:
    """Full-resolution flow of a "pwc" model for one pair at its own size.

    Parameters
    ----------
    model : keras.Model
        From :func:`lesiontrack.tracking.pwc.build_pwc` or its inference form.
    image0, image1 : ndarray, uint8 (H, W, 3)

    Returns
    -------
    ndarray, float32 (H, W, 2)
    """
    from lesiontrack.tracking import pwc

    height, width = image0.shape[:2]
    pad = ((0, -height % pwc.STRIDE), (0, -width % pwc.STRIDE), (0, 0))
    batch0 = np.pad(image0, pad, mode="edge")[None].astype(np.float32)
    batch1 = np.pad(image1, pad, mode="edge")[None].astype(np.float32)
    flow = _forward(model)(batch0, batch1)
    return np.asarray(flow)[0, :height, :width].astype(np.float32)


# The last model's traced full-resolution forward pass: (model, function). Kept so that the
# pairs of one validation share one trace (a new trace costs more than several pairs).
_FORWARD: list = []


def _forward(model):
    """A traced forward pass of ``model``'s full-resolution output, any size (one per model)."""
    import tensorflow as tf

    from lesiontrack.tracking import pwc

    if not _FORWARD or _FORWARD[0] is not model:
        inference = pwc.inference_model(model)
        spec = tf.TensorSpec((None, None, None, 3), tf.float32)
        function = tf.function(lambda a, b: inference([a, b], training=False),
                               input_signature=[spec, spec])
        _FORWARD[:] = [model, function]
    return _FORWARD[1]


def evaluate_pairs(model, root, records, *, limit=32, alphas=(0.01, 0.05, 0.1)) -> dict:
    """EPE (px) and PCK at ``alphas`` x diagonal over the valid pixels of stored pairs.

    Parameters
    ----------
    model : keras.Model
        A "pwc" tracker.
    root : path-like
        Dataset folder.
    records : list of dict
        Pair records; the first ``limit`` are used.

    Returns
    -------
    dict
        ``epe`` and ``pck01``, ``pck05``, ``pck10`` (for the default alphas), pooled over
        the valid pixels of all pairs.
    """
    from lesiontrack import metrics
    from lesiontrack.tracking.data import load_pair

    predicted, true, diagonals = [], [], []
    for record in records[:limit]:
        image0, image1, flow, valid = load_pair(root, record)
        if not valid.any():
            continue
        estimate = predict_pwc(model, image0, image1)
        predicted.append(estimate[valid])
        true.append(flow[valid])
        diagonals.append(np.full(int(valid.sum()), math.hypot(*valid.shape)))
    if not predicted:
        return {"epe": float("nan"), **{_pck_key(a): float("nan") for a in alphas}}
    predicted, true = np.concatenate(predicted), np.concatenate(true)
    # As points carried from the same pixel: the PCK of flows is that of their end points.
    curve = metrics.pck_curve(predicted, true, alphas=alphas, diagonal=np.concatenate(diagonals))
    epe = float(np.sqrt(((predicted - true) ** 2).sum(-1)).mean())
    return {"epe": epe, **{_pck_key(a): float(v) for a, v in zip(alphas, curve)}}


def _pck_key(alpha):
    return f"pck{round(alpha * 100):02d}"


# --------------------------------------------------------------------------- training


def train_pwc(dataset, out, *, init=None, epochs=100, steps=100, batch=8, crop=256, seed=0,
              learning_rate=3e-4, scale_range=(0.5, 1.0), curriculum_steps=CURRICULUM_STEPS,
              pool_size=32, new_fraction=0.25, val_limit=32, freeze=("conv1",)):
    """Train the "pwc" tracker on pairs made on the fly; resumes when ``out`` has a state file.

    Parameters
    ----------
    dataset : path-like
        A synthesized dataset: its "train" t0 photos make the training pairs, its stored
        "val" pairs validate.
    out : path-like
        Best model path (``.keras``, lowest validation EPE); ``.last.keras``, ``.state.json``,
        ``.csv`` beside it.
    init : path-like, optional
        A detector ``.keras``: its conv section initialises the trunk by layer name.
    epochs, steps, batch, crop : int
        Epochs (total, including those done before a resume), batches per epoch, pairs per
        batch, crop side (multiple of 32).
    seed : int
        Seeds each epoch's pairs (``[seed, epoch]``), so a resumed run sees the same data.
    learning_rate : float
        Adam step size.
    scale_range : (float, float)
        Random resize range of each pair before cropping.
    curriculum_steps : int
        Steps over which the largest motion rises (:func:`curriculum_high`).
    pool_size, new_fraction : int, float
        See :class:`PairPool`.
    val_limit : int
        Validation pairs per epoch.
    freeze : sequence of str
        Trunk blocks kept fixed when initialised from a detector (``conv1``: its
        full-resolution convs cost a third of a step and its colour/edge filters carry over).

    Returns
    -------
    list of dict
        Per-epoch log rows.
    """
    from lesiontrack import training as generic
    from lesiontrack.tracking import pwc
    from lesiontrack.tracking.data import pair_records

    dataset = Path(dataset)
    if crop % pwc.STRIDE:
        raise InputError(f"crop {crop}: must be a multiple of {pwc.STRIDE}")
    train_records = pair_records(dataset, "train")
    val_records = pair_records(dataset, "val")
    if not train_records or not val_records:
        raise InputError(f"{dataset}: needs 'train' and 'val' pairs")
    model = _initial_model(init, freeze)
    compile_model(model, learning_rate=learning_rate)
    log.info("tracker pwc, %d parameters, %d train photos, %d val pairs",
             pwc.count_parameters(model), len(train_records), len(val_records))

    def make_epoch_dataset(epoch):
        return make_dataset(dataset, train_records, seed=[seed, epoch], first_step=epoch * steps,
                            batch=batch, crop=crop, scale_range=scale_range,
                            curriculum_steps=curriculum_steps, pool_size=pool_size,
                            new_fraction=new_fraction).take(steps)

    def validate(model):
        return evaluate_pairs(model, dataset, val_records, limit=val_limit)

    config = {"dataset": str(dataset), "init": None if init is None else str(init),
              "variant": pwc.VARIANT, "epochs": epochs, "steps": steps, "batch": batch,
              "crop": crop, "seed": seed, "learning_rate": learning_rate,
              "scale_range": list(scale_range), "curriculum_steps": curriculum_steps,
              "pool_size": pool_size, "new_fraction": new_fraction, "freeze": list(freeze)}
    _, history = generic.fit(model, make_epoch_dataset, validate, out, epochs=epochs,
                             steps=steps, monitor="epe", mode="min", config=config)
    return history


def _initial_model(init, freeze):
    """A new "pwc" tracker, its trunk from the detector ``init`` (by layer name) if given."""
    from lesiontrack.tracking import model as siamese
    from lesiontrack.tracking import pwc

    if init is None:
        return pwc.build_pwc()
    detector = siamese.load_model_file(init)
    model = pwc.build_pwc(siamese.detector_filters(detector))
    copied = siamese.load_detector_weights(model, detector)
    log.info("trunk initialised from %s: %d layers", init, len(copied))
    for layer in model.get_layer("trunk").layers:
        if any(layer.name.startswith(f"{block}_") for block in freeze) and layer.weights:
            layer.trainable = False
    return model


def compact_checkpoint(source, destination, *, learning_rate=3e-4):
    """Copy a training checkpoint without its optimizer state (a third of the size).

    The copy is compiled with the multi-scale loss, so :func:`lesiontrack.training.fit`
    resumes from it (Adam's moments start again from zero). Written atomically.

    Parameters
    ----------
    source, destination : path-like
        ``.keras`` files.
    """
    import os
    import tempfile

    from lesiontrack.model_cache import load_model_file
    from lesiontrack.tracking import pwc

    trained = load_model_file(source)
    copy = pwc.build_pwc(_trunk_filters(trained))
    copy.set_weights(trained.get_weights())
    for layer in copy.get_layer("trunk").layers:  # frozen blocks stay frozen on resume
        layer.trainable = trained.get_layer("trunk").get_layer(layer.name).trainable
    compile_model(copy, learning_rate=learning_rate)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".keras", dir=destination.parent)
    os.close(handle)
    try:
        copy.save(temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _trunk_filters(model):
    """Widths of ``conv1`` .. ``conv4`` of a "pwc" model."""
    trunk = model.get_layer("trunk")
    return tuple(int(trunk.get_layer(f"conv{level}_1").filters) for level in range(1, 5))
