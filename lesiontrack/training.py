"""The training loop shared by the detector and the tracker: resumable, validated, logged.

:func:`fit` runs Keras ``fit`` one epoch at a time, calls a validation function after each
epoch, keeps the best checkpoint by a monitored figure and writes, beside ``out``
(``MODEL.keras``):

* ``MODEL.keras``        best model so far by the validation metric;
* ``MODEL.last.keras``   model (with optimizer state) after the last finished epoch;
* ``MODEL.state.json``   ``{"epoch", "best", "best_epoch", "monitor", ...}`` for resuming;
* ``MODEL.csv``          one row per epoch; ``MODEL.png`` the curves.

:func:`mixed_precision` is the one switch to bfloat16 compute: a context manager around model
building, restoring the previous Keras dtype policy on exit. :func:`cosine_step_size` is the
per-epoch step-size schedule that ``fit`` applies when given one; :func:`step_size_schedule`
builds it from the ``--lr-decay`` and ``--lr-final`` options of both trainers.
"""
from __future__ import annotations

import contextlib
import csv
import io as _io
import logging
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lesiontrack.plots import plot_training_curves
from synth.io import InputError, read_json, write_bytes, write_json

log = logging.getLogger(__name__)


@contextlib.contextmanager
def mixed_precision(enabled: bool = True):
    """Build models under the Keras ``mixed_bfloat16`` policy inside the block.

    Layers created inside compute in bfloat16 with float32 weights (layers given an explicit
    ``dtype="float32"`` stay float32); the previous global policy is restored on exit, also
    after an error. ``enabled=False`` changes nothing.
    """
    if not enabled:
        yield
        return
    import keras

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def cosine_step_size(base, *, start, end, final):
    """A per-epoch step size: ``base`` until ``start`` epochs are done, cosine to ``final``.

    The half-cosine annealing of SGDR (Loshchilov and Hutter, ICLR 2017, eq. 5) without
    restarts: for ``start <= e <= end``,
    ``final + (base - final) * (1 + cos(pi * (e - start) / (end - start))) / 2``; ``final``
    after ``end``. Defined by the epoch number, so a resumed run continues on the same curve.

    Parameters
    ----------
    base, final : float
        Step sizes before and after the decay.
    start, end : int
        Epochs done when the decay starts and ends, ``end > start``.

    Returns
    -------
    callable
        ``schedule(epochs_done) -> float``, the step size of the next epoch.
    """
    if end <= start:
        raise InputError(f"step-size decay {start}:{end}: the last epoch must follow the first")

    def schedule(epoch):
        if epoch <= start:
            return float(base)
        if epoch >= end:
            return float(final)
        return float(final + (base - final) * (1 + math.cos(math.pi * (epoch - start)
                                                            / (end - start))) / 2)
    return schedule


def step_size_schedule(learning_rate, decay, final=None):
    """The schedule of ``--lr-decay FIRST:LAST`` and ``--lr-final``, and its config entries.

    Returns ``(schedule, entries)``: ``schedule`` as from :func:`cosine_step_size` (from
    ``learning_rate`` to ``final``, by default a twentieth of it, between the epoch counts of
    ``decay``), or None with no ``decay`` (constant step size); ``entries`` the dict to record
    in the run's state file (empty with no decay).
    """
    if decay is None:
        return None, {}
    final = learning_rate / 20 if final is None else final
    schedule = cosine_step_size(learning_rate, start=decay[0], end=decay[1], final=final)
    return schedule, {"decay": list(decay), "final_learning_rate": final}


@dataclass(frozen=True)
class TrainingFiles:
    """Paths written by :func:`fit` for a model path ``out``."""

    best: Path
    last: Path
    state: Path
    log: Path
    plot: Path

    @classmethod
    def beside(cls, out):
        out = Path(out)
        if out.suffix != ".keras":
            raise InputError(f"{out}: the model path must end in .keras")
        stem = out.with_suffix("")
        return cls(best=out, last=Path(f"{stem}.last.keras"), state=Path(f"{stem}.state.json"),
                   log=out.with_suffix(".csv"), plot=out.with_suffix(".png"))


def fit(model, make_dataset, validate, out, *, epochs, steps, monitor, mode="max",
        callbacks=(), config=None, step_size=None):
    """Train ``model`` epoch by epoch, validating, checkpointing and logging; resumable.

    Parameters
    ----------
    model : keras.Model
        Compiled model. Replaced by the last checkpoint when ``out`` has a state file.
    make_dataset : callable
        ``make_dataset(epoch) -> tf.data.Dataset`` of ``steps`` batches for that epoch (the
        epoch number should seed it, so a resumed run sees the same data).
    validate : callable
        ``validate(model) -> dict`` of float validation figures.
    out : path-like
        Best model path (``.keras``); companions as in :class:`TrainingFiles`.
    epochs, steps : int
        Total epochs (including those already done when resuming) and batches per epoch.
    monitor : str
        Key of the validation dict that selects the best model; ``mode`` "max" or "min".
    callbacks : sequence of keras.callbacks.Callback
        Passed to ``model.fit``.
    config : dict, optional
        Recorded in the state file.
    step_size : callable, optional
        ``step_size(epochs_done) -> float`` (e.g. :func:`cosine_step_size`), set on the
        optimizer before each epoch and logged as ``lr``; by default the compiled step size is kept.

    Returns
    -------
    model : keras.Model
        The model after the last epoch.
    history : list of dict
        One row per epoch (all epochs in the log, including earlier runs).
    """
    import keras

    files = TrainingFiles.beside(out)
    files.best.parent.mkdir(parents=True, exist_ok=True)
    better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)
    start, best, best_epoch = 0, None, None
    history = []
    if files.state.is_file():
        state = read_json(files.state)
        start, best, best_epoch = state["epoch"], state.get("best"), state.get("best_epoch")
        checkpoint = files.last if files.last.is_file() else files.best
        log.info("resuming from %s after epoch %d (best %s=%s)", checkpoint, start, monitor, best)
        try:
            model = keras.saving.load_model(checkpoint)
        except Exception as error:
            raise InputError(f"{checkpoint}: cannot resume from this checkpoint ({error})") from None
        if files.log.is_file():
            with open(files.log, newline="") as handle:
                history = [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)][:start]
    verbose = 1 if sys.stderr.isatty() else 2
    for epoch in range(start, epochs):
        if step_size is not None:
            model.optimizer.learning_rate.assign(step_size(epoch))
        began = time.perf_counter()
        try:
            result = model.fit(make_dataset(epoch), epochs=epoch + 1, initial_epoch=epoch,
                               steps_per_epoch=steps, verbose=verbose,
                               callbacks=list(callbacks), shuffle=False)
        except Exception as error:
            found = pipeline_input_error(error)
            if found is None:
                raise
            raise found from None
        train_seconds = time.perf_counter() - began
        row = {"epoch": epoch + 1, "loss": float(result.history["loss"][-1]),
               "train_seconds": round(train_seconds, 2)}
        if step_size is not None:
            row["lr"] = float(step_size(epoch))
        row.update({f"val_{k}": float(v) for k, v in validate(model).items()})
        value = row[f"val_{monitor}"]
        improved = best is None or (not math.isnan(value) and better(value, best))
        model.save(files.last)
        if improved:
            best, best_epoch = value, epoch + 1
            model.save(files.best)
        history.append(row)
        _write_log(files.log, history)
        plot_training_curves(files.log, files.plot)
        write_json(files.state, {"epoch": epoch + 1, "best": best, "best_epoch": best_epoch,
                                 "monitor": monitor, "mode": mode, "config": config or {}})
        log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.4g}" for k, v in row.items()))
    return model, history


def pipeline_input_error(error):
    """The InputError raised while a tf.data pipeline read a file, or None.

    TensorFlow wraps an exception raised in a ``tf.numpy_function`` / ``tf.py_function`` into
    its own error whose message quotes the original (``InputError: <file>: <problem>``), with
    a traceback; this recovers the one-line message.
    """
    match = re.search(r"InputError: ([^\n]+)", str(getattr(error, "message", "") or error))
    return InputError(match.group(1).strip()) if match else None


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def _write_log(path, history):
    """Write the epoch rows as CSV, atomically."""
    fields = list(dict.fromkeys(key for row in history for key in row))
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(history)
    write_bytes(path, buffer.getvalue().encode())
