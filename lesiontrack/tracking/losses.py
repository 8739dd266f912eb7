"""Tracker loss: robust end-point error on valid pixels, and its Keras forms for training.

The per-pixel end-point error (EPE) ``e = ||f - f_gt||_2`` is passed through the generalised
Charbonnier penalty ``rho(e) = (e^2 + eps^2)^alpha`` (Sun, Roth and Black, "A quantitative
analysis of current practices in optical flow estimation and the principles behind them",
IJCV 2014, sec. 4.1, with alpha = 0.45 found best there) and averaged over the pixels whose
ground truth is valid (eq. 1)::

    L = sum_p v(p) rho(e(p)) / max(sum_p v(p), 1)

alpha = 0.5 gives the classic Charbonnier, a differentiable L1 of the EPE; alpha < 0.5 is
sub-linear and lowers the pull of occluded or badly warped pixels.

Targets for Keras pack flow and validity into one tensor (B, H, W, 3): dx, dy, valid (0/1)
(:func:`lesiontrack.tracking.data.pack_target`).

:func:`robust_epe` is the numpy reference (on :func:`lesiontrack.metrics.endpoint_errors`,
the one EPE definition); :class:`RobustEPELoss` is the same maths in ``keras.ops`` for
training and :class:`EndPointError` the mean EPE as a Keras metric. PCK and the mean EPE as
figures are in :mod:`lesiontrack.metrics`.

The ``"pwc"`` tracker is trained with a multi-scale form (PWC-Net, Sun et al. 2018, eq. 3,
with this robust penalty): the penalty at every output of the network against the
valid-weighted average of the true flow over each output cell (:class:`LevelRobustLoss`).
PWC-Net weighs levels 1/4 .. 1/32 by 0.005, 0.01, 0.02, 0.08 for sums over a level's pixels;
as weights of per-pixel means that is 1, 0.5, 0.25, 0.25 (:data:`PWC_LOSS_WEIGHTS`); the
full-resolution output weighs 1.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from lesiontrack.metrics import endpoint_errors

ALPHA = 0.45
EPSILON = 1e-3
# "pwc" output -> (stride, weight of its per-pixel mean loss); see the module docstring.
PWC_LOSS_WEIGHTS = {"flow": (1, 1.0), "flow4": (4, 1.0), "flow4_coarse": (4, 0.5),
                    "flow8": (8, 0.5), "flow16": (16, 0.25), "flow32": (32, 0.25)}


def robust_epe(flow_pred, flow_true, valid=None, *, alpha=ALPHA, epsilon=EPSILON) -> float:
    """Generalised Charbonnier of the end-point error, mean over valid pixels (eq. 1).

    Parameters
    ----------
    flow_pred, flow_true : ndarray
        float (..., 2).
    valid : ndarray, optional
        bool or 0/1 (...); default all valid.
    alpha, epsilon : float
        Penalty ``(e^2 + epsilon^2) ** alpha``.

    Returns
    -------
    float
        0 when no pixel is valid.
    """
    error = endpoint_errors(flow_pred, flow_true)
    weights = np.ones_like(error) if valid is None else np.asarray(valid, np.float64)
    penalty = (error ** 2 + epsilon ** 2) ** alpha
    return float((weights * penalty).sum() / max(weights.sum(), 1.0))


@keras.saving.register_keras_serializable(package="lesiontrack")
class RobustEPELoss(keras.losses.Loss):
    """Keras form of :func:`robust_epe`.

    ``y_true``: (B, H, W, 3) = dx, dy, valid; ``y_pred``: (B, H, W, 2) flow. Returns the
    scalar loss of the batch (valid pixels of the whole batch weigh equally).
    """

    def __init__(self, *, alpha=ALPHA, epsilon=EPSILON, name="robust_epe", **kwargs):
        super().__init__(name=name, **kwargs)
        self.alpha = float(alpha)
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        valid = y_true[..., 2]
        squared = ops.sum(ops.square(y_pred - y_true[..., :2]), axis=-1)
        penalty = ops.power(squared + self.epsilon ** 2, self.alpha)
        return ops.sum(valid * penalty) / ops.maximum(ops.sum(valid), 1.0)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "epsilon": self.epsilon}


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


@keras.saving.register_keras_serializable(package="lesiontrack")
class EndPointError(keras.metrics.Metric):
    """Mean EPE in pixels over valid pixels, accumulated over batches (``y_true`` as above)."""

    def __init__(self, name="epe", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "float32")
        valid = y_true[..., 2]
        error = ops.sqrt(ops.sum(ops.square(ops.cast(y_pred, "float32") - y_true[..., :2]), -1))
        self.total.assign_add(ops.sum(valid * error))
        self.count.assign_add(ops.sum(valid))

    def result(self):
        return self.total / ops.maximum(self.count, 1.0)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)
