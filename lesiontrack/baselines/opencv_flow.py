"""Classical optical flow from OpenCV, on grey images.

* :func:`deepflow`: DeepFlow (Weinzaepfel et al., ICCV 2013), OpenCV contrib;
* :func:`dis`: DIS optical flow (Kroeger et al., ECCV 2016), medium preset. Also the coarse
  stage of the ``"refine"`` tracker (:func:`lesiontrack.tracking.infer.coarse_flow`).

Both take uint8 RGB (H, W, 3) photos of one size and return float32 (H, W, 2) forward flow in
pixels, channel 0 = dx.
"""
from __future__ import annotations

import cv2
import numpy as np


def _grey(image):
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def deepflow(image0, image1) -> np.ndarray:
    """DeepFlow from image0 to image1: uint8 RGB (H, W, 3) each -> float32 (H, W, 2)."""
    return cv2.optflow.createOptFlow_DeepFlow().calc(_grey(image0), _grey(image1), None)


# OpenCV's DIS needs a width or a height of at least this many pixels.
DIS_MIN_SIDE = 12


def dis(image0, image1, *, preset=cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> np.ndarray:
    """DIS optical flow from image0 to image1: uint8 RGB (H, W, 3) each -> float32 (H, W, 2).

    Photos smaller than :data:`DIS_MIN_SIDE` on both sides are edge-padded at the bottom to
    that height and the padding cropped from the flow.
    """
    grey0, grey1 = _grey(image0), _grey(image1)
    height, width = grey0.shape
    pad = DIS_MIN_SIDE - height if max(height, width) < DIS_MIN_SIDE else 0
    if pad:
        grey0, grey1 = (cv2.copyMakeBorder(g, 0, pad, 0, 0, cv2.BORDER_REPLICATE)
                        for g in (grey0, grey1))
    return cv2.DISOpticalFlow_create(preset).calc(grey0, grey1, None)[:height]
