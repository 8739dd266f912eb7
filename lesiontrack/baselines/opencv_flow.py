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


def dis(image0, image1, *, preset=cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> np.ndarray:
    """DIS optical flow from image0 to image1: uint8 RGB (H, W, 3) each -> float32 (H, W, 2)."""
    return cv2.DISOpticalFlow_create(preset).calc(_grey(image0), _grey(image1), None)
