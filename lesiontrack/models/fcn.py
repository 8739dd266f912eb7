"""Fully convolutional detector: a conv section and a deconv section with skip links.

Li, Esteva et al. 2016, figure 3 (left); the skip links follow Long et al., "Fully
Convolutional Networks for Semantic Segmentation" (CVPR 2015) in the U-Net form
(Ronneberger et al. 2015): each deconv stage concatenates the conv stage of the same scale.

Layer names are fixed so that the tracker can take the conv section by name:
``conv{level}_{k}`` (k = 1, 2) and ``pool{level}`` for the conv section, ``up{level}``,
``merge{level}``, ``deconv{level}_{k}`` for the deconv section and ``classes`` for the head.
"""
from __future__ import annotations

import keras
from keras import layers

DEFAULT_FILTERS = (16, 32, 64, 96)
NUM_CLASSES = 3
# The input side must be a multiple of this (one factor 2 per pooling).
STRIDE = 2 ** (len(DEFAULT_FILTERS) - 1)


def conv_block(x, filters, name, *, dilation=1):
    """Two 3x3 conv + BN + ReLU layers named ``{name}_1`` and ``{name}_2``."""
    for k in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation, use_bias=False,
                          name=f"{name}_{k}")(x)
        x = layers.BatchNormalization(name=f"{name}_{k}_bn")(x)
        x = layers.Activation("relu", name=f"{name}_{k}_relu")(x)
    return x


def conv_section(inputs, filters=DEFAULT_FILTERS):
    """The conv section; returns the feature map of every level, finest first."""
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inputs)
    features = []
    for level, width in enumerate(filters, start=1):
        if level > 1:
            x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
        x = conv_block(x, width, f"conv{level}")
        features.append(x)
    return features


def build_fcn(filters=DEFAULT_FILTERS, *, num_classes=NUM_CLASSES, name="fcn"):
    """Connect the detector's layers (no weights, no compilation).

    Input: float32 (B, H, W, 3) RGB in [0, 255], H and W multiples of ``2**(len(filters)-1)``.
    Output: float32 (B, H, W, num_classes) softmax probabilities.
    """
    inputs = keras.Input((None, None, 3), name="image")
    features = conv_section(inputs, filters)
    x = features[-1]
    for level in range(len(filters) - 1, 0, -1):
        width = filters[level - 1]
        x = layers.Conv2DTranspose(width, 2, strides=2, name=f"up{level}")(x)
        x = layers.Concatenate(name=f"merge{level}")([x, features[level - 1]])
        x = conv_block(x, width, f"deconv{level}")
    outputs = layers.Conv2D(num_classes, 1, activation="softmax", dtype="float32", name="classes")(x)
    return keras.Model(inputs, outputs, name=name)
