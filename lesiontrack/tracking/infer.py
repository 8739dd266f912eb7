"""Dense flow between two visits with the siamese tracker (Li, Esteva et al. 2016, fig. 3 right).

The network is trained on synthesized pairs whose motion is 5-10 % of the image diagonal at
512 x 512 (diagonal 724 px). Photos much larger than that are processed at a working size whose
diagonal is at most ``max_diagonal`` (default 800 px, 362 px for the "pwc" variant:
:data:`WORKING_DIAGONAL`): the motion of real visits, measured
at about 5 % of the diagonal, then falls in the range the network was trained on, and the run
time stays well under a second for a 1094 x 894 pair on two CPU cores. The flow is resized
back and its values scaled to the input's pixels.

A ``"refine"`` tracker (:mod:`lesiontrack.tracking.model`) is coarse-to-fine: DIS optical flow
at the working size (:func:`coarse_flow`), the second photo warped back onto the first by it,
and the network's residual added to the DIS flow.
"""
from __future__ import annotations

import logging
import math

import numpy as np

from lesiontrack.baselines.opencv_flow import dis
from lesiontrack.imaging import check_image, pad_to_stride, resize_flow, resize_image
from lesiontrack.model_cache import cached_model, graph_function

log = logging.getLogger(__name__)

MAX_DIAGONAL = 800.0
#: Working diagonal of the tracker variants that differ from :data:`MAX_DIAGONAL`. "pwc": the
#: working diagonal with the best PCK@0.01 on the first 24 val pairs of ``runs/ds-real``
#: (512 x 512, diagonal 724; ``lesiontrack evaluate tracking runs/ds-real --split val --limit 24
#: --methods net --max-diagonal D``, D = 800, 543, 453, 362, 300, 256 on 2026-12-02: PCK@0.01
#: 0.464 / 0.598 / 0.618 / 0.622 / 0.600 / 0.582 for the first pwc weights, trained on 192 px
#: crops of pairs resized by 0.5-1). The shipped weights were then trained further on whole
#: photos resized to about this diagonal, and 362 stayed the best (300, 362, 453: 0.748 /
#: 0.771 / 0.758).
WORKING_DIAGONAL = {"pwc": 362.0}


def load_tracker(weights="default"):
    """The tracker for ``weights`` ("default", a path or a keras.Model), loaded once per file."""
    import keras

    from lesiontrack.tracking.model import Tracker

    if isinstance(weights, keras.Model):
        return weights
    return cached_model("tracker", weights, lambda path: Tracker(weights=path))


def _predictor(model):
    """A traced forward pass accepting any image size (traced once per model)."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, None, None, 3), tf.float32)
    return graph_function(model, input_signature=[spec, spec])


def coarse_flow(image0, image1) -> tuple[np.ndarray, np.ndarray]:
    """Coarse stage of the ``"refine"`` tracker: DIS flow and image1 warped back by it.

    Parameters
    ----------
    image0, image1 : ndarray, uint8 (H, W, 3)
        RGB photos of the same size.

    Returns
    -------
    flow : ndarray, float32 (H, W, 2)
        DIS optical flow (Kroeger et al. 2016; OpenCV medium preset on grey images,
        :func:`lesiontrack.baselines.opencv_flow.dis`), channel 0 = dx.
    warped1 : ndarray, uint8 (H, W, 3)
        ``image1`` sampled at ``p + flow(p)`` (bilinear, border replicated): close to
        ``image0`` where the coarse flow is right.
    """
    from synth.pairs.warp import warp_backward

    image0 = check_image(image0, "image0")
    image1 = check_image(image1, "image1")
    if image0.shape != image1.shape:
        raise ValueError(f"coarse_flow needs photos of one size, got {image0.shape} and {image1.shape}")
    flow = dis(image0, image1)
    return flow, warp_backward(image1, flow)


def working_size(width, height, max_diagonal) -> tuple[int, int]:
    """(W, H) at which a photo of ``width`` x ``height`` is processed: scaled down to a diagonal
    of ``max_diagonal`` when it is larger (aspect kept), else unchanged; None: unchanged."""
    factor = 1.0
    if max_diagonal and math.hypot(width, height) > max_diagonal:
        factor = max_diagonal / math.hypot(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def predict_flow(image0, image1, *, weights="default", max_diagonal="auto") -> np.ndarray:
    """Forward flow t0 -> t1 predicted by the siamese tracker.

    Parameters
    ----------
    image0, image1 : ndarray, uint8 (H, W, 3)
        The two visits, RGB. Both are resized to one working size for the network and the
        flow is mapped back with :func:`lesiontrack.imaging.resize_flow` (pixel centres, as
        ``cv2.resize``): from ``image0``'s pixels into ``image1``'s, whatever their sizes.
    weights : "default", path-like or keras.Model
        The packaged weights, a ``.keras`` file from ``lesiontrack train tracker`` or a built
        model (:func:`lesiontrack.tracking.model.Tracker`). A ``"refine"`` model runs DIS
        first (:func:`coarse_flow`) and adds its residual to that flow.
    max_diagonal : "auto", float or None
        Photos with a larger diagonal are processed at a size with this diagonal (see the
        module docstring); "auto" takes the model variant's (:data:`WORKING_DIAGONAL`, else
        :data:`MAX_DIAGONAL`); None processes at full size.

    Returns
    -------
    ndarray, float32 (H, W, 2)
        Channel 0 = dx, channel 1 = dy, in pixels of the inputs:
        ``image0[y, x] ~ image1[y + dy, x + dx]``.
    """
    from lesiontrack.tracking.model import model_variant, stride_of

    image0 = check_image(image0, "image0")
    image1 = check_image(image1, "image1")
    model = load_tracker(weights)
    variant = model_variant(model)
    if isinstance(max_diagonal, str):
        if max_diagonal != "auto":
            raise ValueError(f"max_diagonal must be 'auto', a number or None, got {max_diagonal!r}")
        max_diagonal = WORKING_DIAGONAL.get(variant, MAX_DIAGONAL)
    height, width = image0.shape[:2]
    height1, width1 = image1.shape[:2]
    # Both photos go straight to the working size; the flow comes back in one resize.
    size = working_size(width, height, max_diagonal)
    work0, work1 = resize_image(image0, size), resize_image(image1, size)
    coarse = None
    if variant == "refine":
        # Coarse-to-fine: the network sees image1 warped by DIS and returns the residual.
        coarse, work1 = coarse_flow(work0, work1)
    stride = stride_of(variant)
    batch0, (work_height, work_width) = pad_to_stride(work0, stride, mode="edge")
    batch1, _ = pad_to_stride(work1, stride, mode="edge")
    flow = np.asarray(_predictor(model)(batch0[None].astype(np.float32),
                                        batch1[None].astype(np.float32)))
    flow = flow[0, :work_height, :work_width].astype(np.float32)
    if coarse is not None:
        flow = flow + coarse
    return resize_flow(flow, (width, height), target_size=(width1, height1))
