"""Siamese flow network that tracks skin between two visits.

Li, Esteva et al. 2016, figure 3 (right): both photos go through one shared convolutional
trunk taken from the detector's conv section, split into a small conv part (``conv1`` ..
``conv3``, full to 1/4 resolution) and an atrous (dilated) conv part at 1/4 resolution that
widens the receptive field without losing resolution (Chen et al., "DeepLab", 2017, sec. 3.1);
the two feature maps are merged by subtraction and a small head regresses the per-pixel shift
(dx, dy), upsampled to full resolution.

Four variants (``variant=``):

``"subtract"``
    The paper's design: ``F0 - F1`` at 1/4 resolution -> regression head -> flow. Its reach
    is bounded by the receptive field of the trunk and head (roughly +-60 px).
``"costvolume"`` (default)
    Coarse-to-fine, for the large viewpoint changes between visits: the trunk continues to
    1/16 resolution (the detector's ``conv4`` block at 1/8, then ``coarse``), a correlation
    cost volume over +-``max_displacement`` cells (Dosovitskiy et al., "FlowNet", 2015,
    eq. 1; here +-6 cells = +-96 px) gives a soft arg-max displacement, which a small
    decoder corrects (Sun et al., "PWC-Net", 2018, sec. 3); image 1's 1/4-resolution
    features are warped by the upsampled coarse flow and the subtraction-merge head
    regresses the residual.
``"refine"``
    Coarse-to-fine with a classical coarse stage: DIS optical flow (Kroeger et al., "Fast
    Optical Flow using Dense Inverse Search", ECCV 2016; OpenCV, medium preset, grey) gives
    the coarse flow outside the network, image 1 is warped back onto image 0 by it, and the
    network (the ``"subtract"`` design on ``image0`` and the warped ``image1``) regresses
    the residual, which is added to the coarse flow (as the refinement stages of Ilg et al.,
    "FlowNet 2.0", 2017, sec. 4). The head's last layer starts at zero, so an untrained
    model returns the DIS flow. The network alone outputs only the residual; the DIS step and
    the warp run in numpy (:func:`lesiontrack.tracking.infer.coarse_flow`, used by
    :func:`lesiontrack.tracking.infer.predict_flow` and :mod:`lesiontrack.tracking.data`).
``"pwc"``
    A cost volume at every level from 1/32 to 1/4, warping by the coarser flow, a dilated
    context network and learned convex upsampling (:mod:`lesiontrack.tracking.pwc`, trained
    by :func:`lesiontrack.tracking.train.train_pwc`).

Flows inside the network are always in full-resolution pixels; channel 0 = dx (columns),
forward t0 -> t1 (``image0[p] ~ image1[p + flow(p)]``). Every layer that carries a flow, and
the cost volume, computes in float32 even under a mixed bfloat16 policy (8 mantissa bits
would round a 60 px displacement to 0.25 px).

Layer names of the shared trunk are those of the detector (``scale``, ``conv{l}_{k}`` with
``_bn``/``_relu``, ``pool{l}``), so :func:`load_detector_weights` copies its weights by name.
"""
from __future__ import annotations

import logging

import keras
import numpy as np
from keras import layers

from lesiontrack.detection.model import DEFAULT_FILTERS, conv_block
from lesiontrack.model_cache import load_model_file, resolve_weights
from lesiontrack.tracking import pwc
from lesiontrack.tracking.layers import (MAX_DISPLACEMENT, BackwardWarp, Correlation,
                                         SoftArgmaxFlow, Upsample)

log = logging.getLogger(__name__)

VARIANTS = ("subtract", "costvolume", "refine", "pwc")
DEFAULT_VARIANT = "costvolume"
ATROUS_RATES = (2, 4, 8)
ATROUS_WIDTH = 64
HEAD_WIDTHS = (64, 64, 32)
# Head outputs are multiplied by this so that unit-scale activations mean tens of pixels.
FLOW_SCALE = 16.0


def stride_of(variant: str) -> int:
    """Input sides must be multiples of this (the coarsest feature map: 1/32, 1/16 or 1/4)."""
    if variant == "pwc":
        return pwc.STRIDE
    return 16 if variant == "costvolume" else 4


# --------------------------------------------------------------------------- builders


def _conv(x, filters, name, *, dilation=1, activation=True):
    """3x3 conv (+ BN + ReLU when ``activation``)."""
    x = layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation, use_bias=not activation,
                      name=name)(x)
    if activation:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def _build_trunk(filters, variant, atrous_rates, atrous_width):
    """Shared trunk: detector conv1..conv3, atrous part at 1/4 (+ conv4/coarse at 1/16)."""
    inputs = keras.Input((None, None, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inputs)
    for level in (1, 2, 3):
        if level > 1:
            x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
        x = conv_block(x, filters[level - 1], f"conv{level}")
    conv3 = x
    for rate in atrous_rates:
        x = _conv(x, atrous_width, f"atrous{rate}", dilation=rate)
    outputs = [x]
    if variant == "costvolume":
        # The detector's fourth stage at 1/8, then one more stage at 1/16 for the cost volume.
        y = layers.MaxPooling2D(2, name="pool4")(conv3)
        y = conv_block(y, filters[3], "conv4")
        y = layers.MaxPooling2D(2, name="pool5")(y)
        y = _conv(y, filters[3], "coarse")
        outputs.append(y)
    return keras.Model(inputs, outputs, name="trunk")


def _flow_head(x, prefix, widths, *, zero_init=False):
    """Conv + leaky ReLU stack, then a linear 3x3 conv to (dx, dy) scaled to pixels.

    ``zero_init`` starts the last conv at zero (a residual head that first changes nothing).
    """
    for index, width in enumerate(widths, start=1):
        x = layers.Conv2D(width, 3, padding="same", name=f"{prefix}_conv{index}")(x)
        x = layers.LeakyReLU(0.1, name=f"{prefix}_conv{index}_relu")(x)
    initializer = "zeros" if zero_init else keras.initializers.RandomNormal(stddev=1e-3)
    x = layers.Conv2D(2, 3, padding="same", kernel_initializer=initializer, name=prefix)(x)
    return layers.Rescaling(FLOW_SCALE, dtype="float32", name=f"{prefix}_pixels")(x)


def build_siamese(filters=DEFAULT_FILTERS, *, variant=DEFAULT_VARIANT, atrous_rates=ATROUS_RATES,
                  atrous_width=ATROUS_WIDTH, head_widths=HEAD_WIDTHS,
                  max_displacement=MAX_DISPLACEMENT, name=None):
    """Connect the tracker's layers (no weights, no compilation).

    Inputs: ``image0`` and ``image1``, float32 (B, H, W, 3) RGB in [0, 255], H and W
    multiples of :func:`stride_of` ``(variant)``. Output: float32 (B, H, W, 2) forward flow in
    pixels, channel 0 = dx. With ``variant="refine"`` ``image1`` is the second photo warped
    back onto the first by the coarse (DIS) flow and the output is the residual flow
    (layer ``residual``, zero at initialisation) to add to the coarse flow. With ``variant="costvolume"`` the layers ``coarse_argmax`` (soft
    arg-max of the cost volume, 1/16) and ``coarse_flow_up`` (corrected coarse flow at 1/4)
    hold the intermediate flows, in full-resolution pixels, for inspection.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant == "pwc":
        # Coarse-to-fine with a cost volume at every level (lesiontrack.tracking.pwc);
        # its full-resolution output alone.
        return pwc.inference_model(pwc.build_pwc(filters))
    image0 = keras.Input((None, None, 3), name="image0")
    image1 = keras.Input((None, None, 3), name="image1")
    trunk = _build_trunk(filters, variant, tuple(atrous_rates), atrous_width)
    out0, out1 = trunk(image0), trunk(image1)
    fine0, fine1 = out0[0], out1[0]
    if variant == "subtract":
        merged = layers.Subtract(name="merge")([fine0, fine1])
        flow = _flow_head(merged, "flow", head_widths)
    elif variant == "refine":
        # fine1 comes from image 1 already warped by the coarse flow: what is left to
        # regress is the residual motion, small next to the head's receptive field.
        merged = layers.Subtract(name="merge")([fine0, fine1])
        flow = _flow_head(merged, "residual", head_widths, zero_init=True)
    else:
        coarse0, coarse1 = out0[1], out1[1]
        # Centred and scaled over channels, so that the correlation (a channel mean) is the
        # Pearson correlation of the two feature vectors, in [-1, 1], and features off the
        # frame (zero) score as uncorrelated rather than as a preferred match.
        norm = layers.LayerNormalization(axis=-1, center=False, scale=False, name="coarse_norm")
        cost = Correlation(max_displacement, dtype="float32", name="cost_volume")(
            norm(coarse0), norm(coarse1))
        # Start the soft arg-max at a temperature where a correlation gap of 0.1 is a
        # factor e^2 in weight.
        prior = SoftArgmaxFlow(max_displacement, cell=16.0, initial_beta=20.0, dtype="float32",
                               name="coarse_argmax")(cost)
        x = layers.Concatenate(name="coarse_merge")(
            [layers.LeakyReLU(0.1, name="cost_volume_relu")(cost), coarse0,
             layers.Rescaling(1.0 / FLOW_SCALE, name="coarse_argmax_input")(prior)])
        correction = _flow_head(x, "coarse_flow", (96, 64, 32))
        coarse_flow = layers.Add(dtype="float32", name="coarse_flow_total")([prior, correction])
        # 1/16 -> 1/4: units stay full-resolution pixels, so no rescaling of the values.
        coarse_up = Upsample(4, dtype="float32", name="coarse_flow_up")(coarse_flow)
        warped1 = BackwardWarp(0.25, dtype="float32", name="warp")(fine1, coarse_up)
        merged = layers.Subtract(name="merge")([fine0, warped1])
        x = layers.Concatenate(name="merge_flow")([merged, layers.Rescaling(1.0 / FLOW_SCALE,
                                                                            name="coarse_flow_input")(coarse_up)])
        residual = _flow_head(x, "flow", head_widths)
        flow = layers.Add(dtype="float32", name="refined_flow")([coarse_up, residual])
    flow = Upsample(4, dtype="float32", name="flow_up")(flow)
    return keras.Model([image0, image1], flow, name=name or f"tracker_{variant}")


# --------------------------------------------------------------------------- weights


def _named_layers(model):
    """All layers of a model by name, nested models flattened."""
    found = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(_named_layers(layer))
        else:
            found[layer.name] = layer
    return found


def detector_filters(detector) -> tuple[int, ...]:
    """Widths of a detector's conv levels (``conv{l}_1``), to build a matching trunk."""
    found = _named_layers(detector)
    widths = []
    for level in range(1, 5):
        layer = found.get(f"conv{level}_1")
        if layer is None:
            break
        widths.append(int(layer.filters))
    if len(widths) < 4:
        from synth.io import InputError

        raise InputError(f"{detector.name}: not a detector (needs layers conv1_1 .. conv4_1)")
    return tuple(widths)


def load_detector_weights(tracker, detector) -> list[str]:
    """Copy the detector's conv-section weights into the tracker's trunk, by layer name.

    Parameters
    ----------
    tracker : keras.Model
        A model from :func:`build_siamese` / :func:`Tracker`.
    detector : keras.Model or path-like
        The detector (``build_fcn``) or its ``.keras`` file.

    Returns
    -------
    list of str
        Names of the layers copied. Layers whose weight shapes differ are skipped with a
        warning (``skip_mismatch``).
    """
    if not isinstance(detector, keras.Model):
        detector = load_model_file(detector)
    source = _named_layers(detector)
    copied = []
    for name, layer in _named_layers(tracker).items():
        if name not in source or not layer.weights:
            continue
        weights = source[name].get_weights()
        if [w.shape for w in weights] != [tuple(v.shape) for v in layer.weights]:
            log.warning("layer %s: shapes differ from the detector's, not copied", name)
            continue
        layer.set_weights(weights)
        copied.append(name)
    log.info("copied %d detector layers into the tracker", len(copied))
    return copied


def Tracker(*, weights=None, variant=DEFAULT_VARIANT, detector=None, **kwargs):
    """Build the tracker and load its weights.

    Parameters
    ----------
    weights : None, "default" or path-like
        None: random initialisation (trunk from ``detector`` if given); "default": the
        packaged ``lesiontrack/weights/tracker.keras``; a path: a ``.keras`` file saved from
        a tracker (its variant is taken from the file, ``variant`` is then ignored).
    variant : {"costvolume", "subtract", "refine", "pwc"}
        See the module docstring.
    detector : keras.Model or path-like, optional
        Initialise the shared trunk from the detector (:func:`load_detector_weights`); the
        conv widths are then taken from the detector unless ``filters`` is given.
    **kwargs
        Passed to :func:`build_siamese`.

    Returns
    -------
    keras.Model
        Inputs ``image0``, ``image1`` (B, H, W, 3) float in [0, 255]; output (B, H, W, 2).
    """
    if weights is None:
        if detector is not None and not isinstance(detector, keras.Model):
            detector = load_model_file(detector)
        if detector is not None and "filters" not in kwargs:
            kwargs["filters"] = detector_filters(detector)
        model = build_siamese(variant=variant, **kwargs)
        if detector is not None:
            load_detector_weights(model, detector)
        return model
    from synth.io import InputError

    path = resolve_weights("default" if str(weights) == "default" else weights, "tracker")
    model = load_model_file(path)
    if len(model.inputs) != 2:
        raise InputError(f"{path}: not a tracker (a tracker takes two images)")
    # A "pwc" training checkpoint also outputs every level; inference needs the finest.
    return pwc.inference_model(model) if pwc.is_pwc(model) else model


def model_variant(model) -> str:
    """'pwc', 'costvolume', 'refine' or 'subtract' from a built tracker's layers."""
    if pwc.is_pwc(model):
        return "pwc"
    names = {layer.name for layer in model.layers}
    if "cost_volume" in names:
        return "costvolume"
    return "refine" if "residual" in names else "subtract"


def count_parameters(model) -> int:
    """Number of weights (trainable and not)."""
    return int(sum(np.prod(v.shape) for v in model.weights))
