"""Figures for evaluation and training (matplotlib's object API, no pyplot).

``*_figure`` functions build a :class:`matplotlib.figure.Figure` from arrays (nothing touches
files or the global backend, so importing this module changes nothing); ``plot_*`` functions
save one as PNG. Every figure is drawn to a temporary file in the destination folder and
renamed into place, so an interrupted run never leaves a half-written PNG under the final
name.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from synth.io import InputError, atomic_path

DPI = 120


def _new_figure(figsize):
    """A Figure drawn by the Agg canvas, independent of pyplot's global state."""
    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path) -> Path:
    """Save a figure atomically as PNG (``DPI`` dots per inch, tight bounding box)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png")
    return path


def plot_froc(curves: dict, path, *, title="FROC", max_fp=None) -> Path:
    """FROC curves of several methods as a PNG (:func:`froc_figure`); returns ``path``."""
    return save_figure(froc_figure(curves, title=title, max_fp=max_fp), path)


def froc_figure(curves: dict, *, title="FROC", max_fp=None) -> Figure:
    """FROC curves of several methods on one axes (Li, Esteva et al. 2016 fig. 4).

    Parameters
    ----------
    curves : dict
        name -> (fp_per_image, sensitivity), float arrays (T,). Each curve is drawn as a step
        function from the origin through the best sensitivity reached at each FP rate.
    title : str
    max_fp : float, optional
        Right limit of the false-positive axis; default the largest value plotted (at least 4).

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure = _new_figure((5.5, 4.2))
    axes = figure.add_subplot()
    largest = 4.0
    for name, (fp, sens) in curves.items():
        fp, sens = np.asarray(fp, float), np.asarray(sens, float)
        order = np.argsort(fp, kind="stable")
        # Start at the origin so a curve with few operating points still reads as a curve.
        axes.step(np.r_[0.0, fp[order]], np.r_[0.0, np.maximum.accumulate(sens[order])]
                  if sens.size else [0.0], where="post", label=name)
        if fp.size:
            largest = max(largest, float(fp.max()))
    axes.set_xlim(0, max_fp if max_fp is not None else largest)
    return _finish(figure, axes, xlabel="false positives per image", ylabel="sensitivity",
                   title=title, legend=bool(curves))


def _finish(figure, axes, *, xlabel, ylabel, title, legend):
    """Rate axis from 0 to 1, labels, grid, legend; returns the figure."""
    axes.set_ylim(0, 1.02)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if legend:
        axes.legend(loc="lower right")
    return figure


def plot_roc(curves: dict, path, title="ROC") -> Path:
    """ROC curves of several methods as a PNG (:func:`roc_figure`); returns ``path``."""
    return save_figure(roc_figure(curves, title=title), path)


def roc_figure(curves: dict, *, title="ROC") -> Figure:
    """ROC curves of several methods on one axes, with their areas in the legend.

    Parameters
    ----------
    curves : dict
        name -> (fpr, tpr, auc); fpr, tpr float arrays (T,), auc float (nan when undefined).
        The legend reads ``"name (AUC 0.900)"``, or ``"name"`` when the area is nan.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        The chance diagonal first, then one line per curve.
    """
    figure = _new_figure((4.8, 4.5))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1)
    for name, (fpr, tpr, area) in curves.items():
        label = name if area is None or math.isnan(area) else f"{name} (AUC {area:.3f})"
        axes.plot(np.asarray(fpr, float), np.asarray(tpr, float), label=label)
    axes.set_xlim(0, 1)
    return _finish(figure, axes, xlabel="false positive rate", ylabel="true positive rate",
                   title=title, legend=bool(curves))


def plot_pck(curves: dict, path, *, title="PCK", log_axis=False) -> Path:
    """PCK curves of several methods as a PNG (:func:`pck_figure`); returns ``path``."""
    return save_figure(pck_figure(curves, title=title, log_axis=log_axis), path)


def pck_figure(curves: dict, *, title="PCK", log_axis=False) -> Figure:
    """Percentage of correct keypoints against the threshold alpha, several methods.

    Parameters
    ----------
    curves : dict
        name -> (alphas, pck), float arrays (T,); alpha as a fraction of the image diagonal.
    title : str
    log_axis : bool
        Logarithmic alpha axis.

    Returns
    -------
    matplotlib.figure.Figure
    """
    return pck_sets_figure({title: curves}, log_axis=log_axis)


def plot_pck_sets(sets: dict, path, *, log_axis=False) -> Path:
    """One PCK panel per set of pairs as a PNG (:func:`pck_sets_figure`); returns ``path``."""
    return save_figure(pck_sets_figure(sets, log_axis=log_axis), path)


def pck_sets_figure(sets: dict, *, log_axis=False) -> Figure:
    """PCK curves of several methods, one panel per set of pairs, side by side.

    Parameters
    ----------
    sets : dict
        panel title -> curves as :func:`pck_figure` takes them (name -> (alphas, pck)).
    log_axis : bool
        Logarithmic alpha axis.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per set, in order.
    """
    figure = _new_figure((5.5 * max(len(sets), 1), 4.2))
    for index, (title, curves) in enumerate(sets.items(), start=1):
        axes = figure.add_subplot(1, len(sets), index)
        grid = [np.asarray(alphas, float) for alphas, _ in curves.values()]
        for (name, (_, pck)), alphas in zip(curves.items(), grid):
            # Dots mark a few measured tolerances; a dense curve is drawn as a line.
            axes.plot(alphas, np.asarray(pck, float), marker="." if alphas.size <= 12 else None,
                      label=name)
        if log_axis:
            axes.set_xscale("log")
        values = np.concatenate(grid) if grid else np.zeros(0)
        if values.size:
            axes.set_xlim(values.min(), values.max())
        _finish(figure, axes, xlabel="alpha (fraction of image diagonal)", ylabel="PCK",
                title=title, legend=bool(curves))
    return figure


def plot_training_curves(csv_path, png_path) -> Path:
    """Training curves of a per-epoch CSV log as a PNG (:func:`training_curves_figure`).

    Parameters
    ----------
    csv_path : path-like
        CSV with a header row (``epoch``, ``loss``, ``val_loss``, ...), as written by
        :func:`lesiontrack.training.fit` or a Keras ``CSVLogger``.
    png_path : path-like
        PNG to write.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        Naming the CSV when it is missing, unreadable, empty or has no metric column.
    """
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise InputError(f"{csv_path}: no such file") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{csv_path}: not a readable CSV file ({error})") from None
    if not rows:
        raise InputError(f"{csv_path}: no rows")
    columns = {name: np.asarray([_number(row.get(name)) for row in rows])
               for name in rows[0] if name}
    if not metric_names(columns):
        raise InputError(f"{csv_path}: no metric columns")
    return save_figure(training_curves_figure(columns), png_path)


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def metric_names(columns) -> list[str]:
    """Panel names of a log: training columns, then validation-only figures (``val_`` cut).

    ``epoch`` and timing columns (``*_seconds``) are not metrics.
    """
    def is_metric(name):
        return name and name != "epoch" and not name.endswith("seconds")

    names = [n for n in columns if is_metric(n) and not n.startswith("val_")]
    names += [n[4:] for n in columns if is_metric(n) and n.startswith("val_") and n[4:] not in columns]
    return names


def training_curves_figure(columns: dict) -> Figure:
    """One panel per metric of a training log, training and validation curves against epoch.

    Parameters
    ----------
    columns : dict
        Column name -> float array (E,) over epochs: ``epoch`` (default 0..E-1), metrics
        such as ``loss`` and their validation ``val_loss``; validation figures without a
        training column (``val_mean_iou``) get a panel of their own (``mean_iou``).

    Returns
    -------
    matplotlib.figure.Figure
        Panels in the order of :func:`metric_names`, at most three per row; each has a
        "train" and/or a "validation" line.
    """
    names = metric_names(columns)
    if not names:
        raise ValueError("no metric columns to plot")
    length = len(next(iter(columns.values())))
    epochs = np.asarray(columns.get("epoch", np.arange(length)), float)
    width = min(3, len(names))
    height = math.ceil(len(names) / width)
    figure = _new_figure((4.2 * width, 3.2 * height))
    axes = figure.subplots(height, width, squeeze=False)
    for axis, name in zip(axes.flat, names):
        if name in columns:
            axis.plot(epochs, np.asarray(columns[name], float), label="train")
        if f"val_{name}" in columns:
            axis.plot(epochs, np.asarray(columns[f"val_{name}"], float), label="validation")
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    for axis in list(axes.flat)[len(names):]:
        axis.set_visible(False)
    figure.tight_layout()
    return figure
