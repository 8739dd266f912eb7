"""Coarse-to-fine flow network with a local cost volume at every level (tracker variant "pwc").

In the spirit of PWC-Net (Sun, Yang, Liu and Kautz, "PWC-Net: CNNs for Optical Flow Using
Pyramid, Warping, and Cost Volume", CVPR 2018):

1. Feature pyramid. Both photos go through one shared trunk, the detector's conv section
   (``conv1`` .. ``conv4``, full to 1/8 resolution, copied from the detector by layer name as
   the paper of Li, Esteva et al. 2016 initialises its tracker), continued by ``conv5`` (1/16)
   and ``conv6`` (1/32).
2. At each level from 1/32 to 1/4 (sec. 3 of PWC-Net): image 1's features are warped by the
   flow from the coarser level, upsampled (bilinear sampling, :class:`BackwardWarp`); a local
   correlation over +-4 cells (81 channels, :class:`LocalCorrelation`) compares them with
   image 0's features; a small conv decoder (densely connected, DenseNet-style, as PWC-Net's
   "dense" decoder, at 1/32 to 1/8; a plain stack at 1/4) reads the cost volume, image 0's
   features, the upsampled flow and the coarser decoder's features and predicts a flow
   update.
3. A context network of dilated 3x3 convolutions (rates 1, 2, 4, 8, 16; PWC-Net sec. 3,
   "context network", the atrous part of Li, Esteva et al.) refines the 1/4 flow.
4. Learned convex upsampling from 1/4 to full resolution (Teed and Deng, "RAFT", ECCV 2020,
   sec. 3.3, :class:`ConvexUpsample`): each full-resolution flow is a convex combination of
   the 3x3 coarse neighbours, with weights predicted from the context features.

Flows between layers are in full-resolution pixels (channel 0 = dx, forward t0 -> t1,
``image0[p] ~ image1[p + flow(p)]``), as in :mod:`lesiontrack.tracking.model`; every layer that
carries a flow computes in float32. Inputs must have sides that are multiples of
:data:`STRIDE` (32). Layer names are fixed and readable: ``conv{l}_{k}`` in the trunk,
``corr{s}``, ``warp{s}``, ``decoder{s}_conv{k}``, ``flow{s}`` per level of stride ``s``,
``context_conv{k}``, ``context_flow``, ``upsample_mask``, ``flow`` (the full-resolution output).

:func:`build_pwc` returns a model with one output per level (a dict ``flow``, ``flow4``,
``flow4_coarse``, ``flow8``, ``flow16``, ``flow32``) for the multi-scale training loss;
:func:`inference_model` keeps the ``flow`` output only (the form shipped and used by
:func:`lesiontrack.tracking.infer.predict_flow`).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers

from lesiontrack.detection.model import DEFAULT_FILTERS, conv_block
from lesiontrack.tracking.layers import BackwardWarp, Upsample

VARIANT = "pwc"
STRIDE = 32
SEARCH_RADIUS = 4
# Trunk widths beyond the detector's four levels (1/16 and 1/32).
EXTRA_FILTERS = (128, 128)
# Decoder widths per level stride, coarse to fine; narrower at fine levels where pixels
# are many (the 1/4 level has 64 times the pixels of the 1/32 level). Decoders are densely
# connected except at 1/4, where that would cost as much as the whole trunk (measured with
# bin/flow-benchmark: the inference time must stay a fraction of the classical methods').
DECODER_WIDTHS = {32: (96, 64, 32), 16: (96, 64, 32), 8: (48, 32, 32), 4: (32, 32)}
DENSE_STRIDES = (32, 16, 8)
CONTEXT_RATES = (1, 2, 4, 8, 16)
CONTEXT_WIDTHS = (32, 32, 32, 32, 32)
# Decoder outputs are multiplied by this so that unit-scale activations mean tens of pixels.
FLOW_SCALE = 16.0
UPSAMPLE_FACTOR = 4


# --------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="lesiontrack")
class LocalCorrelation(layers.Layer):
    """Local correlation cost volume over +-``radius`` cells (PWC-Net eq. 2 / FlowNet eq. 1).

    ``c(x, d) = mean_k f0_k(x) f1_k(x + d)`` for every displacement ``d`` in
    ``[-r, r]^2``, channel ``(dy + r) * (2r + 1) + (dx + r)``. Inputs (B, h, w, C) each;
    output (B, h, w, (2r + 1)^2). Outside image 1 the features count as zero. Computed as
    a stack of shifted products of the zero-padded ``f1``: memory stays that of one feature
    map per displacement instead of the (B, h, w, (2r + 1)^2, C) tensor of a patch op.
    """

    def __init__(self, radius=SEARCH_RADIUS, **kwargs):
        super().__init__(**kwargs)
        self.radius = int(radius)

    def call(self, features0, features1):
        import tensorflow as tf

        r = self.radius
        height, width = tf.shape(features0)[1], tf.shape(features0)[2]
        padded = tf.pad(features1, [[0, 0], [r, r], [r, r], [0, 0]])
        costs = []
        for dy in range(2 * r + 1):
            for dx in range(2 * r + 1):
                shifted = padded[:, dy:dy + height, dx:dx + width, :]
                costs.append(tf.reduce_mean(features0 * shifted, axis=-1))
        return tf.stack(costs, axis=-1)

    def compute_output_shape(self, features0_shape, features1_shape=None):
        return (*features0_shape[:3], (2 * self.radius + 1) ** 2)

    def get_config(self):
        return {**super().get_config(), "radius": self.radius}


@keras.saving.register_keras_serializable(package="lesiontrack")
class ConvexUpsample(layers.Layer):
    """Convex upsampling of a flow by ``factor`` (RAFT, Teed and Deng 2020, sec. 3.3).

    Each output pixel ``(f y + i, f x + j)`` is a convex combination of the 3x3 neighbours of
    coarse cell ``(y, x)`` (edge-replicated at the border), weighted by a softmax over 9
    mask logits, and the value is multiplied by ``factor`` (the input flow is in coarse-grid
    pixels, the output in fine-grid pixels), as RAFT's ``upsample_flow``.

    Inputs: flow (B, h, w, 2) and mask logits (B, h, w, 9 * factor^2), channel
    ``(i * factor + j) * 9 + k`` for sub-pixel (i, j) and neighbour k (row-major 3x3).
    Output: (B, factor h, factor w, 2).
    """

    def __init__(self, factor=UPSAMPLE_FACTOR, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, flow, mask):
        import tensorflow as tf

        f = self.factor
        shape = tf.shape(flow)
        batch, height, width = shape[0], shape[1], shape[2]
        padded = tf.pad(flow, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        neighbours = tf.stack([padded[:, dy:dy + height, dx:dx + width, :]
                               for dy in range(3) for dx in range(3)], axis=3)  # (B,h,w,9,2)
        # Softmax over a 5-D view: oneDNN's CPU softmax kernel (used on AVX-512 machines)
        # refuses more than 5 dimensions.
        weights = tf.nn.softmax(tf.reshape(mask, [batch, height, width, f * f, 9]), axis=-1)
        weights = tf.reshape(weights, [batch, height, width, f, f, 9])
        up = tf.einsum("bhwijk,bhwkc->bhiwjc", weights, neighbours * float(f))
        return tf.reshape(up, [batch, height * f, width * f, 2])

    def compute_output_shape(self, flow_shape, mask_shape=None):
        scaled = [None if s is None else s * self.factor for s in flow_shape[1:3]]
        return (flow_shape[0], *scaled, 2)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


# --------------------------------------------------------------------------- builders


def _leaky_conv(x, filters, name, *, dilation=1):
    """3x3 conv + leaky ReLU (0.1), PWC-Net's decoder unit."""
    x = layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation, name=name)(x)
    return layers.LeakyReLU(0.1, name=f"{name}_relu")(x)


def _flow_conv(x, name, *, output_name=None):
    """Linear 3x3 conv to (dx, dy), scaled to pixels, float32; starts near zero."""
    x = layers.Conv2D(2, 3, padding="same", name=f"{name}_conv",
                      kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3))(x)
    return layers.Rescaling(FLOW_SCALE, dtype="float32", name=output_name or f"{name}_pixels")(x)


def _build_pyramid(filters, extra_filters):
    """Shared trunk: detector conv1..conv4 (full .. 1/8), conv5 (1/16), conv6 (1/32)."""
    inputs = keras.Input((None, None, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inputs)
    outputs = []
    widths = tuple(filters) + tuple(extra_filters)
    for level, width in enumerate(widths, start=1):
        if level > 1:
            x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
        x = conv_block(x, width, f"conv{level}")
        if level >= 3:
            outputs.append(x)
    return keras.Model(inputs, outputs, name="trunk")  # 1/4, 1/8, 1/16, 1/32


def _decoder(inputs, widths, stride, *, dense=True, output_name=None):
    """Conv stack (densely connected if ``dense``); returns (features, flow update in px)."""
    x = inputs
    for index, width in enumerate(widths, start=1):
        y = _leaky_conv(x, width, f"decoder{stride}_conv{index}")
        x = layers.Concatenate(name=f"decoder{stride}_dense{index}")([x, y]) if dense else y
    return y, _flow_conv(x, f"decoder{stride}_flow", output_name=output_name)


def build_pwc(filters=DEFAULT_FILTERS, *, extra_filters=EXTRA_FILTERS,
              decoder_widths=None, dense_strides=DENSE_STRIDES, context_rates=CONTEXT_RATES,
              context_widths=CONTEXT_WIDTHS, radius=SEARCH_RADIUS, name="tracker_pwc"):
    """Connect the layers of the "pwc" tracker (no weights, no compilation).

    Parameters
    ----------
    filters : sequence of 4 int
        Widths of the detector's conv levels (``conv1`` .. ``conv4``).
    extra_filters : sequence of 2 int
        Widths of ``conv5`` (1/16) and ``conv6`` (1/32).
    decoder_widths : dict, optional
        Stride -> conv widths of that level's decoder; default :data:`DECODER_WIDTHS`.
    dense_strides : sequence of int
        Levels whose decoder is densely connected (each conv sees all earlier outputs).
    context_rates, context_widths : sequence of int
        Dilation rates and widths of the context network (at 1/4).
    radius : int
        Search radius of the correlation in cells (4: 81 channels).

    Returns
    -------
    keras.Model
        Inputs ``image0``, ``image1``: float32 (B, H, W, 3) RGB in [0, 255], H and W
        multiples of :data:`STRIDE`. Outputs, a dict of float32 flows in full-resolution
        pixels: ``flow`` (B, H, W, 2), ``flow4`` (after the context network) and
        ``flow4_coarse`` (before it) at H/4, ``flow8``, ``flow16``, ``flow32``.
    """
    widths_by_stride = dict(DECODER_WIDTHS if decoder_widths is None else decoder_widths)
    image0 = keras.Input((None, None, 3), name="image0")
    image1 = keras.Input((None, None, 3), name="image1")
    trunk = _build_pyramid(filters, extra_filters)
    pyramid0 = dict(zip((4, 8, 16, 32), trunk(image0)))
    pyramid1 = dict(zip((4, 8, 16, 32), trunk(image1)))
    outputs = {}
    flow = features = None
    for stride in (32, 16, 8, 4):
        f0, f1 = pyramid0[stride], pyramid1[stride]
        inputs = []
        if flow is not None:
            # Flow values are full-resolution pixels at every level: upsampling keeps them.
            flow = Upsample(2, dtype="float32", name=f"flow{stride}_up")(flow)
            features = Upsample(2, name=f"decoder{stride}_features_up")(features)
            f1 = BackwardWarp(1.0 / stride, dtype="float32", name=f"warp{stride}")(f1, flow)
            inputs = [layers.Rescaling(1.0 / FLOW_SCALE, name=f"flow{stride}_input")(flow),
                      features]
        # Centred and scaled over channels: the correlation is then the Pearson correlation
        # of two feature vectors, in [-1, 1], and zero features off the frame score 0.
        norm = layers.LayerNormalization(axis=-1, center=False, scale=False,
                                         name=f"corr{stride}_norm")
        cost = LocalCorrelation(radius, dtype="float32", name=f"corr{stride}")(norm(f0), norm(f1))
        cost = layers.LeakyReLU(0.1, name=f"corr{stride}_relu")(cost)
        x = layers.Concatenate(name=f"decoder{stride}_input")([cost, f0, *inputs])
        key = "flow4_coarse" if stride == 4 else f"flow{stride}"
        # The coarsest level's update is its flow: give that layer the level's name.
        features, update = _decoder(x, widths_by_stride[stride], stride,
                                    dense=stride in dense_strides,
                                    output_name=key if flow is None else None)
        flow = update if flow is None else layers.Add(dtype="float32", name=key)([flow, update])
        outputs[key] = flow
    # Context network (dilated convs) on the finest decoder's features and flow.
    x = layers.Concatenate(name="context_input")(
        [features, layers.Rescaling(1.0 / FLOW_SCALE, name="flow4_context_input")(flow)])
    for index, (rate, width) in enumerate(zip(context_rates, context_widths), start=1):
        x = _leaky_conv(x, width, f"context_conv{index}", dilation=rate)
    flow4 = layers.Add(dtype="float32", name="flow4")([flow, _flow_conv(x, "context_flow")])
    outputs["flow4"] = flow4
    # Convex upsampling mask from the context features (RAFT's mask head; its 0.25 scale
    # keeps the initial softmax close to uniform).
    mask = _leaky_conv(x, 64, "upsample_mask_conv")
    mask = layers.Conv2D(9 * UPSAMPLE_FACTOR ** 2, 1, name="upsample_mask")(mask)
    mask = layers.Rescaling(0.25, dtype="float32", name="upsample_mask_scaled")(mask)
    # ConvexUpsample multiplies by its factor: give it the flow in 1/4-grid pixels.
    coarse = layers.Rescaling(1.0 / UPSAMPLE_FACTOR, dtype="float32", name="flow4_grid")(flow4)
    outputs["flow"] = ConvexUpsample(UPSAMPLE_FACTOR, dtype="float32", name="flow")(coarse, mask)
    return keras.Model([image0, image1], outputs, name=name)


def inference_model(model):
    """The full-resolution output of a :func:`build_pwc` model alone (weights shared).

    Returns the model itself when it has a single output already.
    """
    if not isinstance(model.output, dict) and len(model.outputs) == 1:
        return model
    return keras.Model(model.inputs, model.get_layer("flow").output, name=model.name)


def is_pwc(model) -> bool:
    """Whether a tracker model is of this variant (it has the convex upsampling layer)."""
    return any(isinstance(layer, ConvexUpsample) for layer in model.layers)


def count_parameters(model) -> int:
    """Number of weights (trainable and not)."""
    return int(sum(np.prod(v.shape) for v in model.weights))
