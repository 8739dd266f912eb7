"""Custom Keras layers of the tracker: cost volume, soft arg-max, warp, upsampling.

Registered for serialisation under the package name ``lesiontrack`` so that a saved tracker
(``.keras``) loads once this module is imported (:mod:`lesiontrack.tracking.model` does).
Flows are in full-resolution pixels, channel 0 = dx (columns).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers

MAX_DISPLACEMENT = 6


@keras.saving.register_keras_serializable(package="lesiontrack")
class Correlation(layers.Layer):
    """Correlation cost volume (FlowNet eq. 1 with a 1x1 patch).

    ``c(x, d) = mean_k f0_k(x) f1_k(x + d)`` for every displacement ``d`` in
    ``[-D, D]^2``; channel ``(dy + D) * (2D + 1) + (dx + D)``. Inputs (B, h, w, C) each;
    output (B, h, w, (2D + 1)^2). Outside image 1 the features count as zero.
    """

    def __init__(self, max_displacement=MAX_DISPLACEMENT, **kwargs):
        super().__init__(**kwargs)
        self.max_displacement = int(max_displacement)

    def call(self, features0, features1):
        import tensorflow as tf

        d = self.max_displacement
        size = 2 * d + 1
        shape = tf.shape(features0)
        padded = tf.pad(features1, [[0, 0], [d, d], [d, d], [0, 0]])
        # One patch op instead of (2D + 1)^2 slices: a much smaller graph to trace. Patch
        # values are ordered (row, column, channel), i.e. displacement index (dy, dx).
        patches = tf.image.extract_patches(padded, sizes=[1, size, size, 1], strides=[1, 1, 1, 1],
                                           rates=[1, 1, 1, 1], padding="VALID")
        patches = tf.reshape(patches, [shape[0], shape[1], shape[2], size * size, shape[3]])
        return tf.reduce_mean(patches * features0[:, :, :, None, :], axis=-1)

    def compute_output_shape(self, features0_shape, features1_shape=None):
        return (*features0_shape[:3], (2 * self.max_displacement + 1) ** 2)

    def get_config(self):
        return {**super().get_config(), "max_displacement": self.max_displacement}


@keras.saving.register_keras_serializable(package="lesiontrack")
class SoftArgmaxFlow(layers.Layer):
    """Expected displacement under a softmax over a cost volume, in full-resolution pixels.

    ``flow(x) = cell * sum_d softmax_d(beta * c(x, d)) d`` (a differentiable arg-max, as in
    Kendall et al., "GC-Net", 2017, eq. 1), with a learned inverse temperature ``beta``
    (stored as its log). It gives a sensible coarse flow from the first step, which the
    decoder then corrects. Input (B, h, w, (2D + 1)^2); output (B, h, w, 2), dx first.
    """

    def __init__(self, max_displacement=MAX_DISPLACEMENT, cell=16.0, initial_beta=1.0, **kwargs):
        super().__init__(**kwargs)
        self.max_displacement = int(max_displacement)
        self.cell = float(cell)
        self.initial_beta = float(initial_beta)

    def build(self, input_shape):
        self.log_beta = self.add_weight(
            shape=(), name="log_beta",
            initializer=keras.initializers.Constant(np.log(self.initial_beta)))

    def call(self, cost):
        from keras import ops

        d = self.max_displacement
        offsets = np.arange(-d, d + 1, dtype=np.float32) * self.cell
        dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
        grid = ops.convert_to_tensor(np.stack([dx.ravel(), dy.ravel()], -1))  # (K^2, 2)
        weights = ops.softmax(cost * ops.exp(ops.cast(self.log_beta, cost.dtype)), axis=-1)
        return ops.einsum("bhwk,kc->bhwc", weights, ops.cast(grid, cost.dtype))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], 2)

    def get_config(self):
        return {**super().get_config(), "max_displacement": self.max_displacement,
                "cell": self.cell, "initial_beta": self.initial_beta}


@keras.saving.register_keras_serializable(package="lesiontrack")
class BackwardWarp(layers.Layer):
    """Bilinear sampling of features at ``p + scale * flow(p)`` (border replicated).

    Inputs: features (B, h, w, C) and flow (B, h, w, 2) in full-resolution pixels; ``scale``
    converts them to this level's pixels (1/4 at 1/4 resolution).
    """

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, features, flow):
        import tensorflow as tf

        shape = tf.shape(features)
        batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
        ys, xs = tf.meshgrid(tf.range(height, dtype=flow.dtype), tf.range(width, dtype=flow.dtype),
                             indexing="ij")
        x = tf.clip_by_value(xs[None] + self.scale * flow[..., 0], 0.0, tf.cast(width - 1, flow.dtype))
        y = tf.clip_by_value(ys[None] + self.scale * flow[..., 1], 0.0, tf.cast(height - 1, flow.dtype))
        x0, y0 = tf.floor(x), tf.floor(y)
        wx, wy = (x - x0)[..., None], (y - y0)[..., None]
        x0i, y0i = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
        x1i, y1i = tf.minimum(x0i + 1, width - 1), tf.minimum(y0i + 1, height - 1)
        flat = tf.reshape(features, [batch, height * width, channels])

        def gather(yi, xi):
            index = tf.reshape(yi * width + xi, [batch, -1])
            return tf.reshape(tf.gather(flat, index, batch_dims=1), shape)

        top = gather(y0i, x0i) * (1 - wx) + gather(y0i, x1i) * wx
        bottom = gather(y1i, x0i) * (1 - wx) + gather(y1i, x1i) * wx
        return top * (1 - wy) + bottom * wy

    def compute_output_shape(self, features_shape, flow_shape=None):
        return features_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="lesiontrack")
class Upsample(layers.Layer):
    """Bilinear upsampling by an integer factor (half-pixel centres), any input size.

    Values are kept: flows here are in full-resolution pixels at every level.
    """

    def __init__(self, factor=4, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, x):
        import tensorflow as tf

        size = tf.shape(x)[1:3] * self.factor
        return tf.cast(tf.image.resize(x, size, method="bilinear"), x.dtype)

    def compute_output_shape(self, input_shape):
        scaled = [None if s is None else s * self.factor for s in input_shape[1:3]]
        return (input_shape[0], *scaled, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
