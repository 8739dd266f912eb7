"""Figures for evaluation and training (matplotlib, Agg backend).

Every figure is drawn to a temporary file in the destination folder and renamed into place, so
an interrupted run never leaves a half-written PNG under the final name.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from synth.io import InputError, atomic_path  # noqa: E402


def _save(figure, path) -> Path:
    """Save a figure atomically as PNG and close it."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    finally:
        plt.close(figure)
    return path


def plot_froc(curves: dict, path, *, title="FROC", max_fp=None) -> Path:
    """FROC curves of several methods on one axes (Li, Esteva et al. 2016 fig. 4).

    Parameters
    ----------
    curves : dict
        name -> (fp_per_image, sensitivity), float arrays (T,).
    path : path-like
        PNG to write.
    title : str
    max_fp : float, optional
        Right limit of the false-positive axis; default the largest value plotted (at least 4).

    Returns
    -------
    Path
    """
    figure, axes = plt.subplots(figsize=(5.5, 4.2))
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
    return _finish(figure, axes, path, xlabel="false positives per image",
                   ylabel="sensitivity", title=title, legend=bool(curves))


def _finish(figure, axes, path, *, xlabel, ylabel, title, legend):
    """Rate axis from 0 to 1, labels, grid, legend; save the figure."""
    axes.set_ylim(0, 1.02)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if legend:
        axes.legend(loc="lower right")
    return _save(figure, path)


def plot_roc(curves: dict, path, title="ROC") -> Path:
    """ROC curves of several methods on one axes, with their areas in the legend.

    Parameters
    ----------
    curves : dict
        name -> (fpr, tpr, auc); fpr, tpr float arrays (T,), auc float (nan when undefined).
    path : path-like
        PNG to write.
    title : str

    Returns
    -------
    Path
    """
    figure, axes = plt.subplots(figsize=(4.8, 4.5))
    axes.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1)
    for name, (fpr, tpr, area) in curves.items():
        label = name if area is None or math.isnan(area) else f"{name} (AUC {area:.3f})"
        axes.plot(np.asarray(fpr, float), np.asarray(tpr, float), label=label)
    axes.set_xlim(0, 1)
    return _finish(figure, axes, path, xlabel="false positive rate",
                   ylabel="true positive rate", title=title, legend=bool(curves))


def plot_pck(curves: dict, path, *, title="PCK") -> Path:
    """Percentage of correct keypoints against the threshold alpha, several methods.

    Parameters
    ----------
    curves : dict
        name -> (alphas, pck), float arrays (T,); alpha as a fraction of the image diagonal.
    path : path-like
        PNG to write.
    title : str

    Returns
    -------
    Path
    """
    figure, axes = plt.subplots(figsize=(5.5, 4.2))
    for name, (alphas, pck) in curves.items():
        axes.plot(np.asarray(alphas, float), np.asarray(pck, float), marker=".", label=name)
    return _finish(figure, axes, path, xlabel="alpha (fraction of image diagonal)",
                   ylabel="PCK", title=title, legend=bool(curves))


def plot_training_curves(csv_path, png_path) -> Path:
    """Plot a Keras ``CSVLogger`` history: one panel per metric, training and validation.

    Parameters
    ----------
    csv_path : path-like
        CSV with a header row (``epoch``, ``loss``, ``val_loss``, ...).
    png_path : path-like
        PNG to write.

    Returns
    -------
    Path
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

    def column(name):
        values = []
        for row in rows:
            try:
                values.append(float(row.get(name, "nan")))
            except (TypeError, ValueError):
                values.append(float("nan"))
        return np.asarray(values)

    names = [n for n in rows[0] if n and n != "epoch" and not n.startswith("val_")]
    names += [n[4:] for n in rows[0] if n and n.startswith("val_") and n[4:] not in rows[0]]
    if not names:
        raise InputError(f"{csv_path}: no metric columns")
    epochs = column("epoch") if "epoch" in rows[0] else np.arange(len(rows), dtype=float)
    columns = min(3, len(names))
    lines = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.2 * lines),
                                squeeze=False)
    for axis, name in zip(axes.flat, names):
        if name in rows[0]:
            axis.plot(epochs, column(name), label="train")
        if f"val_{name}" in rows[0]:
            axis.plot(epochs, column(f"val_{name}"), label="validation")
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    for axis in list(axes.flat)[len(names):]:
        axis.set_visible(False)
    figure.tight_layout()
    return _save(figure, png_path)
