"""Fully convolutional detector: a conv section and a deconv section with skip links.

Li, Esteva et al. 2016, figure 3 (left); the skip links follow Long et al., "Fully
Convolutional Networks for Semantic Segmentation" (CVPR 2015) in the U-Net form
(Ronneberger et al. 2015): each deconv stage concatenates the conv stage of the same scale.

Layer names are fixed so that the tracker can take the conv section by name:
``conv{level}_{k}`` (k = 1, 2) and ``pool{level}`` for the conv section, ``up{level}``,
``merge{level}``, ``deconv{level}_{k}`` for the deconv section and ``classes`` for the head.
"""
from __future__ import annotations

import warnings
import keras
from keras import layers

from lesiontrack.model_cache import resolve_weights
from synth.io import InputError

DEFAULT_FILTERS = (16, 32, 64, 96)
NUM_CLASSES = 3
# The input side must be a multiple of this (one factor 2 per pooling).
STRIDE = 2 ** (len(DEFAULT_FILTERS) - 1)


def conv_block(x, filters, name, *, dilation=1, batch_norm=True):
    """Two 3x3 conv + BN + ReLU layers named ``{name}_1`` and ``{name}_2``.

    With ``batch_norm=False`` each conv carries a bias and the ReLU instead of the BN layer:
    the layout of :func:`fold_batch_norm`'s inference model.
    """
    for k in (1, 2):
        if batch_norm:
            x = layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation, use_bias=False,
                              name=f"{name}_{k}")(x)
            x = layers.BatchNormalization(name=f"{name}_{k}_bn")(x)
            x = layers.Activation("relu", name=f"{name}_{k}_relu")(x)
        else:
            x = layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation,
                              activation="relu", name=f"{name}_{k}")(x)
    return x


def conv_section(inputs, filters=DEFAULT_FILTERS, *, batch_norm=True):
    """The conv section; returns the feature map of every level, finest first."""
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inputs)
    features = []
    for level, width in enumerate(filters, start=1):
        if level > 1:
            x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
        x = conv_block(x, width, f"conv{level}", batch_norm=batch_norm)
        features.append(x)
    return features


def build_fcn(filters=DEFAULT_FILTERS, *, num_classes=NUM_CLASSES, name="fcn", batch_norm=True):
    """Connect the detector's layers (no weights, no compilation).

    Input: float32 (B, H, W, 3) RGB in [0, 255], H and W multiples of ``2**(len(filters)-1)``.
    Output: float32 (B, H, W, num_classes) softmax probabilities. ``batch_norm=False`` builds
    the inference layout of :func:`fold_batch_norm` (biased convs, no BN layers).
    """
    inputs = keras.Input((None, None, 3), name="image")
    features = conv_section(inputs, filters, batch_norm=batch_norm)
    x = features[-1]
    for level in range(len(filters) - 1, 0, -1):
        width = filters[level - 1]
        x = layers.Conv2DTranspose(width, 2, strides=2, name=f"up{level}")(x)
        x = layers.Concatenate(name=f"merge{level}")([x, features[level - 1]])
        x = conv_block(x, width, f"deconv{level}", batch_norm=batch_norm)
    outputs = layers.Conv2D(num_classes, 1, activation="softmax", dtype="float32", name="classes")(x)
    return keras.Model(inputs, outputs, name=name)


def _check_detector(model, path):
    """Raise InputError unless ``model`` looks like this detector (names and shapes)."""
    names = {layer.name for layer in model.layers}
    missing = {"conv1_1", "classes"} - names
    if missing:
        raise InputError(f"{path}: not a detector model (no layer {', '.join(sorted(missing))})")
    if model.input_shape[-1] != 3 or model.output_shape[-1] != NUM_CLASSES:
        raise InputError(
            f"{path}: detector must map 3 input channels to {NUM_CLASSES} classes, "
            f"found {model.input_shape[-1]} -> {model.output_shape[-1]}"
        )


def FCN(*, weights=None, filters=None, num_classes=NUM_CLASSES):  # noqa: N802 (model factory)
    """The detector of Li, Esteva et al. 2016 (figure 3, left), optionally with weights.

    Parameters
    ----------
    weights : None, "default" or path-like
        None: random initialisation. "default": the trained weights shipped in
        ``lesiontrack/weights/detector.keras``. A path: a ``.keras`` model saved by
        :func:`lesiontrack.detection.train.train_detector` (its own architecture is used unless
        ``filters`` is given) or a ``.weights.h5`` file for the architecture ``filters``.
    filters : sequence of int, optional
        Widths of the conv levels; default :data:`DEFAULT_FILTERS`.
    num_classes : int
        Output classes (background, benign, malignant).

    Returns
    -------
    keras.Model
        float32 (B, H, W, 3) RGB in [0, 255] -> float32 (B, H, W, num_classes) softmax;
        H and W must be multiples of ``2**(len(filters)-1)`` (:data:`STRIDE` by default).

    Raises
    ------
    InputError
        Naming the file when the weights are missing, unreadable or do not fit the model.
    """
    if weights is None:
        return build_fcn(tuple(filters or DEFAULT_FILTERS), num_classes=num_classes)
    path = resolve_weights(weights, "detector")
    try:
        # Keras warns once per layer before failing on a mismatch; the error below says it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            if path.name.endswith(".keras") and filters is None:
                model = keras.saving.load_model(path, compile=False)
            else:
                model = build_fcn(tuple(filters or DEFAULT_FILTERS), num_classes=num_classes)
                model.load_weights(path)
    except InputError:
        raise
    except Exception as error:  # Keras raises many types for unreadable or mismatched files
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{path}: unreadable or incompatible detector weights ({detail[:200]})") from None
    _check_detector(model, path)
    return model


def fold_batch_norm(model):
    """The same detector for inference with every batch normalisation folded into its conv.

    In inference a BN layer is the affine map ``gamma (z - mean) / sqrt(var + eps) + beta``
    per channel (Ioffe and Szegedy 2015, algorithm 2), so conv + BN equals one conv with
    weights ``w * s`` and bias ``beta - mean * s``, ``s = gamma / sqrt(var + eps)``. The folded
    model skips one pass over every feature map per layer (about a quarter of the CPU time of a
    1094x894 photo here) and gives the same probabilities to float32 rounding. It is for
    inference only: it has no BN layers to train, and the tracker's trunk is copied from the
    trained model, not this one.

    Parameters
    ----------
    model : keras.Model
        A detector built by :func:`build_fcn` (with BN layers).

    Returns
    -------
    keras.Model
        Same input, output, stride and layer names (``conv*``/``deconv*``, ``up*``,
        ``classes``), without the ``*_bn`` layers.
    """
    import numpy as np

    if not any(layer.name.endswith("_bn") for layer in model.layers):
        return model  # already folded
    folded = build_fcn(level_widths(model), num_classes=model.get_layer("classes").filters,
                       name=f"{model.name}_folded", batch_norm=False)
    for layer in folded.layers:
        if not layer.weights:
            continue
        source = model.get_layer(layer.name)
        if layer.name.startswith(("conv", "deconv")):
            norm = model.get_layer(f"{layer.name}_bn")
            (kernel,) = source.get_weights()
            gamma, beta, mean, variance = norm.get_weights()
            scale = gamma / np.sqrt(variance + norm.epsilon)
            layer.set_weights([kernel * scale, beta - mean * scale])
        else:
            layer.set_weights(source.get_weights())
    return folded


def level_widths(model) -> tuple[int, ...]:
    """Widths of the conv levels of a detector (its ``conv{level}_1`` layers), finest first."""
    widths = {}
    for layer in model.layers:
        name = layer.name
        if name.startswith("conv") and name.endswith("_1") and name[4:-2].isdigit():
            widths[int(name[4:-2])] = layer.filters
    return tuple(widths[level] for level in sorted(widths))


def model_stride(model) -> int:
    """Input side multiple required by a detector: 2 per pooling layer."""
    return 2 ** sum(1 for layer in model.layers if layer.name.startswith("pool"))
