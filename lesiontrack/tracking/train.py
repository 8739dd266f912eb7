"""Training of the siamese tracker (Li, Esteva et al. 2016, fig. 3 right), resumable.

Uses the shared loop :func:`lesiontrack.training.fit` (best checkpoint by validation EPE,
``.last.keras`` + ``.state.json`` for resuming, ``.csv`` log, ``.png`` curves beside ``out``);
the data come from :mod:`lesiontrack.tracking.data`, the loss from
:mod:`lesiontrack.tracking.losses`.

:func:`train_tracker` trains the ``costvolume``, ``subtract`` and ``refine`` variants on the
dataset's stored pairs; :func:`train_pwc` trains the ``"pwc"`` variant
(:mod:`lesiontrack.tracking.pwc`) on pairs made on the fly under a motion curriculum
(:func:`lesiontrack.tracking.data.make_pwc_dataset`) with the multi-scale loss
(:class:`lesiontrack.tracking.losses.LevelRobustLoss`), validated on the stored val pairs at
their full size (:func:`evaluate_pwc_flow`: EPE and PCK at 0.01 / 0.05 / 0.1 of the diagonal
over valid pixels, with :mod:`lesiontrack.metrics`).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from lesiontrack.imaging import resize_flow, resize_image
from lesiontrack.training import fit, mixed_precision as mixed_precision_policy, step_size_schedule
from synth.io import InputError

log = logging.getLogger(__name__)

VALIDATION_ALPHAS = (0.01, 0.05, 0.1)


def evaluate_flow(model, root, records, *, limit=32, max_diagonal=None) -> dict:
    """Mean EPE (px), PCK@0.01/0.05/0.1 of the diagonal and robust loss on full val pairs.

    Parameters
    ----------
    model : keras.Model
        A tracker.
    root : path-like
        Dataset folder.
    records : list of dict
        Pair records (the first ``limit`` are used, the same every epoch).
    max_diagonal : float or None
        Passed to :func:`lesiontrack.tracking.infer.predict_flow` (None: full size).

    Returns
    -------
    dict
        ``epe``, ``pck01``, ``pck05``, ``pck10``, ``loss``: EPE and PCK over the valid pixels
        of all pairs pooled (:mod:`lesiontrack.metrics`: a pixel is correct when its error is
        ``<=`` alpha x its pair's diagonal), loss the mean over pairs.
    """
    from lesiontrack.metrics import correct_fraction, endpoint_errors
    from lesiontrack.tracking.data import load_pair
    from lesiontrack.tracking.infer import predict_flow
    from lesiontrack.tracking.losses import robust_epe

    errors, diagonals, losses = [], [], []
    for record in records[:limit]:
        image0, image1, flow, valid = load_pair(root, record)
        predicted = predict_flow(image0, image1, weights=model, max_diagonal=max_diagonal)
        if not valid.any():
            continue
        error = endpoint_errors(predicted, flow)[valid]
        errors.append(error)
        diagonals.append(np.full(error.shape, np.hypot(*valid.shape)))
        losses.append(robust_epe(predicted, flow, valid))
    if not errors:
        return {"epe": float("nan"), "pck01": float("nan"), "pck05": float("nan"),
                "pck10": float("nan"), "loss": float("nan")}
    errors = np.concatenate(errors)
    pck01, pck05, pck10 = correct_fraction(errors, alphas=VALIDATION_ALPHAS,
                                           diagonal=np.concatenate(diagonals))
    return {"epe": float(errors.mean()), "pck01": float(pck01), "pck05": float(pck05),
            "pck10": float(pck10), "loss": float(np.mean(losses))}


def train_tracker(dataset, out, *, init=None, epochs=10, steps=100, batch=8, crop=256, seed=0,
                  learning_rate=5e-4, variant=None, scale_range=(0.5, 1.0),
                  synthetic_fraction=0.0, val_limit=32, alpha=0.45, freeze=None,
                  mixed_precision=False):
    """Train the tracker on a dataset's pairs; resumes when ``out`` has a state file.

    Parameters
    ----------
    dataset : path-like
        Dataset folder (``synth make-dataset`` with pairs); "train" pairs train, "val" pairs
        validate (the train pairs are used when there are no val pairs, with a warning).
    out : path-like
        Best model path (``.keras``).
    init : path-like, optional
        A detector ``.keras`` (its conv section initialises the shared trunk by layer name)
        or a tracker ``.keras`` to continue from.
    epochs, steps, batch, crop : int
        Epochs, batches per epoch, pairs per batch, crop side (multiple of the stride, 16).
    seed : int
        Seeds crops and augmentation (per epoch, so a resumed run sees the same data).
    learning_rate : float
        Adam step size.
    variant : {"costvolume", "subtract", "refine"}, optional
        Network variant (default "costvolume"; ignored when ``init`` is a tracker). "refine"
        trains the residual to DIS flow (:mod:`lesiontrack.tracking.data`, ``coarse``).
    scale_range : (float, float)
        Random resize range before cropping (see :mod:`lesiontrack.tracking.data`).
    synthetic_fraction : float
        Share of pairs made on the fly from t0 photos with :mod:`synth.pairs`.
    val_limit : int
        Validation pairs per epoch (full photos).
    alpha : float
        Exponent of the generalised Charbonnier loss.
    freeze : sequence of str, optional
        Trunk blocks kept fixed (e.g. ``("conv1",)``). Default: ``("conv1",)`` when the trunk
        comes from a detector (its full-resolution block costs about a third of a training
        step on CPU and its colour/edge filters carry over), none otherwise.
    mixed_precision : bool
        Compute in bfloat16 (weights, flows and the cost volume stay float32); about 1.3x
        faster per step on CPU. Applies when the model is built (not when continuing from a
        tracker file).

    Returns
    -------
    list of dict
        Per-epoch log rows.
    """
    import keras

    from lesiontrack.tracking import model as siamese
    from lesiontrack.tracking.data import make_dataset, pair_records
    from lesiontrack.tracking.losses import EndPointError, RobustEPELoss

    dataset = Path(dataset)
    train_records = pair_records(dataset, "train")
    val_records = pair_records(dataset, "val")
    if not train_records:
        raise InputError(f"{dataset}: no training pairs (split 'train' with a 'pair')")
    if not val_records:
        log.warning("%s: no validation pairs; validating on training pairs", dataset)
        val_records = train_records
    with mixed_precision_policy(mixed_precision):
        model, from_detector = _initial_model(init, variant or siamese.DEFAULT_VARIANT)
    if freeze is None:
        freeze = ("conv1",) if from_detector else ()
    frozen = freeze_blocks(model, freeze)
    if frozen:
        log.info("frozen trunk layers: %s", ", ".join(frozen))
    variant = siamese.model_variant(model)
    stride = siamese.stride_of(variant)
    if crop % stride:
        raise InputError(f"crop {crop}: must be a multiple of the model stride {stride}")
    log.info("tracker %s, %d parameters, %d train / %d val pairs", variant,
             siamese.count_parameters(model), len(train_records), len(val_records))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=10.0),
                  loss=RobustEPELoss(alpha=alpha), metrics=[EndPointError()])

    def make_epoch_dataset(epoch):
        return make_dataset(dataset, train_records, batch_size=batch, seed=[seed, epoch],
                            crop=crop, scale_range=tuple(scale_range),
                            synthetic_fraction=synthetic_fraction,
                            coarse=variant == "refine").take(steps)

    def validate(model):
        return evaluate_flow(model, dataset, val_records, limit=val_limit)

    config = {"dataset": str(dataset), "init": None if init is None else str(init),
              "variant": variant, "epochs": epochs, "steps": steps, "batch": batch, "crop": crop,
              "seed": seed, "learning_rate": learning_rate, "scale_range": list(scale_range),
              "synthetic_fraction": synthetic_fraction, "alpha": alpha,
              "frozen": list(frozen), "mixed_precision": mixed_precision}
    _, history = fit(model, make_epoch_dataset, validate, out, epochs=epochs, steps=steps,
                             monitor="epe", mode="min", config=config)
    return history


def freeze_blocks(model, blocks) -> list[str]:
    """Make the trunk layers named ``{block}_*`` untrainable; returns their names.

    Frozen batch-normalisation layers also keep their statistics (Keras runs them in
    inference mode).
    """
    names = []
    for layer in model.get_layer("trunk").layers:
        if any(layer.name.startswith(f"{block}_") for block in blocks) and layer.weights:
            layer.trainable = False
            names.append(layer.name)
    return names


def _initial_model(init, variant):
    """(model, from_detector): a fresh tracker, one with a detector's trunk, or a tracker."""
    from lesiontrack.model_cache import load_model_file
    from lesiontrack.tracking import model as siamese

    if init is None:
        return siamese.Tracker(variant=variant), False
    model = load_model_file(init)
    if len(model.inputs) == 2:
        return model, False
    tracker = siamese.Tracker(variant=variant, detector=model)
    log.info("tracker trunk initialised from detector %s", init)
    return tracker, True


# --------------------------------------------------------------------------- "pwc" variant


def compile_pwc(model, *, learning_rate=3e-4, alpha=None):
    """Compile a :func:`lesiontrack.tracking.pwc.build_pwc` model with the multi-scale loss."""
    import keras

    from lesiontrack.tracking.losses import (ALPHA, PWC_LOSS_WEIGHTS, EndPointError,
                                             LevelRobustLoss)

    alpha = ALPHA if alpha is None else alpha
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, clipnorm=10.0),
        loss={key: LevelRobustLoss(stride=stride, alpha=alpha)
              for key, (stride, _) in PWC_LOSS_WEIGHTS.items()},
        loss_weights={key: weight for key, (_, weight) in PWC_LOSS_WEIGHTS.items()},
        metrics={"flow": [EndPointError()]})
    return model


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


def evaluate_pwc_flow(model, root, records, *, limit=32, alphas=VALIDATION_ALPHAS,
                      max_diagonal=None) -> dict:
    """EPE (px) and PCK at ``alphas`` x diagonal over the valid pixels of stored pairs.

    Parameters
    ----------
    model : keras.Model
        A "pwc" tracker.
    root : path-like
        Dataset folder.
    records : list of dict
        Pair records; the first ``limit`` are used.
    max_diagonal : float, optional
        Pairs with a larger diagonal are processed at this working diagonal, as
        :func:`lesiontrack.tracking.infer.predict_flow` does, and the flow mapped back; the
        figures stay in the pairs' own pixels. Full size when None.

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
        estimate = _predict_at(model, image0, image1, max_diagonal)
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


def _predict_at(model, image0, image1, max_diagonal):
    """:func:`predict_pwc` at a working diagonal of at most ``max_diagonal`` (None: full size)."""
    from lesiontrack.tracking.infer import working_size

    height, width = image0.shape[:2]
    size = working_size(width, height, max_diagonal)
    if size == (width, height):
        return predict_pwc(model, image0, image1)
    flow = predict_pwc(model, resize_image(image0, size), resize_image(image1, size))
    return resize_flow(flow, (width, height))


def _pck_key(alpha):
    return f"pck{round(alpha * 100):02d}"


def train_pwc(dataset, out, *, init=None, epochs=100, steps=100, batch=8, crop=256, seed=0,
              learning_rate=3e-4, scale_range=(0.5, 1.0), curriculum_steps=None,
              pool_size=32, new_fraction=0.25, val_limit=32, freeze=("conv1",),
              decay=None, final_learning_rate=None, val_diagonal=None):
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
    decay : (int, int), optional
        Epochs done at the start and at the end of a cosine decay of the step size from
        ``learning_rate`` to ``final_learning_rate`` (default a twentieth of it)
        (:func:`lesiontrack.training.cosine_step_size`); constant when None.
    curriculum_steps : int, optional
        Steps over which the largest motion rises
        (:func:`lesiontrack.tracking.data.curriculum_high`; default
        :data:`lesiontrack.tracking.data.CURRICULUM_STEPS`).
    pool_size, new_fraction : int, float
        See :class:`lesiontrack.tracking.data.PairPool`.
    val_limit : int
        Validation pairs per epoch.
    val_diagonal : float, optional
        Working diagonal of the validation pairs (:func:`evaluate_pwc_flow`); full size when
        None.
    freeze : sequence of str
        Trunk blocks kept fixed when initialised from a detector (``conv1``: its
        full-resolution convs cost a third of a step and its colour/edge filters carry over).

    Returns
    -------
    list of dict
        Per-epoch log rows.
    """
    from lesiontrack.tracking import pwc
    from lesiontrack.tracking.data import CURRICULUM_STEPS, make_pwc_dataset, pair_records

    if curriculum_steps is None:
        curriculum_steps = CURRICULUM_STEPS
    dataset = Path(dataset)
    if crop % pwc.STRIDE:
        raise InputError(f"crop {crop}: must be a multiple of {pwc.STRIDE}")
    train_records = pair_records(dataset, "train")
    val_records = pair_records(dataset, "val")
    if not train_records or not val_records:
        raise InputError(f"{dataset}: needs 'train' and 'val' pairs")
    model = _initial_pwc_model(init, freeze)
    # Compiling also registers the loss classes that a resumed checkpoint's compile config names.
    compile_pwc(model, learning_rate=learning_rate)
    log.info("tracker pwc, %d parameters, %d train photos, %d val pairs",
             pwc.count_parameters(model), len(train_records), len(val_records))

    def make_epoch_dataset(epoch):
        return make_pwc_dataset(dataset, train_records, seed=[seed, epoch],
                                first_step=epoch * steps, batch=batch, crop=crop,
                                scale_range=scale_range, curriculum_steps=curriculum_steps,
                                pool_size=pool_size, new_fraction=new_fraction).take(steps)

    def validate(model):
        return evaluate_pwc_flow(model, dataset, val_records, limit=val_limit,
                                 max_diagonal=val_diagonal)

    config = {"dataset": str(dataset), "init": None if init is None else str(init),
              "variant": pwc.VARIANT, "epochs": epochs, "steps": steps, "batch": batch,
              "crop": crop, "seed": seed, "learning_rate": learning_rate,
              "scale_range": list(scale_range), "curriculum_steps": curriculum_steps,
              "pool_size": pool_size, "new_fraction": new_fraction, "freeze": list(freeze)}
    if val_diagonal:
        config["val_diagonal"] = float(val_diagonal)
    schedule, entries = step_size_schedule(learning_rate, decay, final_learning_rate)
    config.update(entries)
    _, history = fit(model, make_epoch_dataset, validate, out, epochs=epochs, steps=steps,
                     monitor="epe", mode="min", config=config, step_size=schedule)
    return history


def _initial_pwc_model(init, freeze):
    """A new "pwc" tracker: its trunk from the detector ``init`` (by layer name), all of it
    from a "pwc" tracker ``init`` (a new run continuing another's weights), or random."""
    from lesiontrack.tracking import model as siamese
    from lesiontrack.tracking import pwc

    if init is None:
        return pwc.build_pwc()
    source = siamese.load_model_file(init)
    if pwc.is_pwc(source):
        import keras

        model = keras.models.clone_model(source)  # same layers and names, fresh variables
        model.set_weights(source.get_weights())
        log.info("tracker initialised from the pwc tracker %s", init)
    else:
        model = pwc.build_pwc(siamese.detector_filters(source))
        copied = siamese.load_detector_weights(model, source)
        log.info("trunk initialised from %s: %d layers", init, len(copied))
    for layer in model.get_layer("trunk").layers:
        if any(layer.name.startswith(f"{block}_") for block in freeze) and layer.weights:
            layer.trainable = False
    return model


def compact_checkpoint(source, destination, *, learning_rate=3e-4):
    """Copy a "pwc" training checkpoint without its optimizer state (a third of the size).

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
    compile_pwc(copy, learning_rate=learning_rate)
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
