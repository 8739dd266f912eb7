"""Training of the siamese tracker (Li, Esteva et al. 2016, fig. 3 right), resumable.

Uses the shared loop :func:`lesiontrack.training.fit` (best checkpoint by validation EPE,
``.last.keras`` + ``.state.json`` for resuming, ``.csv`` log, ``.png`` curves beside ``out``);
the data come from :mod:`lesiontrack.tracking.data`, the loss from
:mod:`lesiontrack.tracking.losses`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lesiontrack.training import fit, mixed_precision as mixed_precision_policy
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
