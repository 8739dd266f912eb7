"""Dense correspondence between two photos, behind one function.

:func:`estimate_flow` dispatches to the learned tracker (``"net"``) or to a classical baseline:

* ``"deepflow"``: DeepFlow (Weinzaepfel et al., ICCV 2013), :mod:`lesiontrack.baselines.opencv_flow`;
* ``"dis"``: DIS optical flow (Kroeger et al., ECCV 2016), medium preset, same module;
* ``"siftflow"``: SIFT Flow (Liu et al., TPAMI 2011), :mod:`lesiontrack.baselines.siftflow`;
* ``"dsp"``: deformable spatial pyramid (Kim et al., CVPR 2013), :mod:`lesiontrack.baselines.dsp`;
* ``"zero"``: zero flow (the "no motion" reference);
* ``"net"``: the siamese flow network, :func:`lesiontrack.tracking.infer.predict_flow`.

``estimate_flow`` is also exported as ``lesiontrack.estimate_flow``. Imports go one way: this
module calls the tracker and the baselines; none of them imports it.

Flow convention: float32 (H, W, 2) at image0's size, channel 0 = dx (columns), channel 1 = dy,
forward image0 -> image1, in pixels: pixel (x, y) of image0 shows the point seen at
(x + dx, y + dy) in image1.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

from lesiontrack.baselines.opencv_flow import deepflow, dis
from lesiontrack.imaging import check_image, resize_flow, resize_image

log = logging.getLogger(__name__)

METHODS = ("net", "siftflow", "dsp", "deepflow", "dis", "zero")


def estimate_flow(image0: np.ndarray, image1: np.ndarray, *, method: str = "net",
                  **options) -> np.ndarray:
    """Dense flow from image0 to image1.

    Parameters
    ----------
    image0, image1 : ndarray
        uint8 RGB (H, W, 3) and (H1, W1, 3). If image1's size differs, it is resized to
        image0's size for matching and the flow is mapped into image1's own pixel grid by
        :func:`lesiontrack.imaging.resize_flow` (pixel centres, as ``cv2.resize``):
        x1 = (x0 + dx' + 0.5) * W1 / W - 0.5, with dx' the flow between the equal-size images.
    method : str
        One of :data:`METHODS`.
    **options
        Keyword options of the method (for example ``max_side`` for ``"siftflow"`` and
        ``"dsp"``, ``weights`` for ``"net"``).

    Returns
    -------
    ndarray
        float32 (H, W, 2) flow at image0's size, channel 0 = dx, forward image0 -> image1,
        in pixels.

    Raises
    ------
    ValueError
        Unknown method, or an image that is not uint8 RGB (H, W, 3).
    """
    if method not in METHODS:
        raise ValueError(f"unknown flow method {method!r}; choose one of {', '.join(METHODS)}")
    image0 = check_image(image0, "image0")
    image1 = check_image(image1, "image1")
    height, width = image0.shape[:2]
    height1, width1 = image1.shape[:2]
    flow = np.asarray(_METHODS[method](image0, resize_image(image1, (width, height)), **options),
                      np.float32)
    if flow.shape != (height, width, 2):
        raise RuntimeError(f"method {method!r} returned flow of shape {flow.shape}, "
                           f"expected {(height, width, 2)}")
    if (height1, width1) != (height, width):
        flow = resize_flow(flow, (width, height), target_size=(width1, height1))
    return flow


def _siftflow(image0, image1, **options):
    from lesiontrack.baselines.siftflow import siftflow
    return siftflow(image0, image1, **options)


def _dsp(image0, image1, **options):
    from lesiontrack.baselines.dsp import dsp
    return dsp(image0, image1, **options)


def _zero(image0, image1):
    return np.zeros(image0.shape[:2] + (2,), np.float32)


def _net(image0, image1, *, weights="default", **options):
    # Imported here: the tracker pulls in TensorFlow, which the baselines do not need.
    from lesiontrack.tracking import infer
    return infer.predict_flow(image0, image1, weights=weights, **options)


_METHODS = {"net": _net, "siftflow": _siftflow, "dsp": _dsp, "deepflow": deepflow,
            "dis": dis, "zero": _zero}


def flow_to_color(flow: np.ndarray, *, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code a flow field: hue = direction, saturation = magnitude (Middlebury style).

    Parameters
    ----------
    flow : ndarray
        float (H, W, 2).
    max_magnitude : float, optional
        Magnitude shown fully saturated; the largest finite magnitude if omitted.

    Returns
    -------
    ndarray
        uint8 RGB (H, W, 3); zero flow is white.
    """
    flow = np.nan_to_num(np.asarray(flow, np.float32))
    magnitude, angle = cv2.cartToPolar(flow[..., 0], flow[..., 1], angleInDegrees=True)
    if max_magnitude is None:
        max_magnitude = float(magnitude.max()) if magnitude.size else 0.0
    hsv = np.empty(flow.shape[:2] + (3,), np.uint8)
    hsv[..., 0] = (angle / 2).astype(np.uint8)  # OpenCV hue is 0..179
    hsv[..., 1] = np.clip(255 * magnitude / max(max_magnitude, 1e-6), 0, 255).astype(np.uint8)
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
