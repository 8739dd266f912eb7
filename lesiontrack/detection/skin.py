"""Keeping detections on skin: the photo's skin mask applied to the detector's heatmap.

Body photos show clothing, straps, labels, walls and black padding beside the skin, and the
FCN, trained on skin crops, can fire on their texture and edges. ``lesiontrack detect``
therefore segments the skin (:func:`synth.skin.segment_skin`, a per-photo colour model with
morphology), removes P(lesion) off the slightly dilated skin before the proposals are made,
so that no lesion region can run across a strap or a garment edge (the skin mask cuts it
there), and drops the proposals that still lie mostly off skin.

numpy / OpenCV only (no TensorFlow).
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

log = logging.getLogger(__name__)

# Skin grown by this many pixels before masking: moles on the skin's edge keep their rim.
DILATION_PX = 3
# A proposal is kept when at least this share of its pixels lies on (undilated) skin.
MIN_SKIN_SHARE = 0.5


def photo_skin(image):
    """Skin mask of a photo for detection, or None when no skin is found.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).

    Returns
    -------
    ndarray or None
        bool (H, W), True on skin; None when :func:`synth.skin.segment_skin` finds none
        (a close-up of a single lesion, an unusual photo): detection then uses every pixel.
    """
    from synth.skin import segment_skin

    try:
        return segment_skin(np.ascontiguousarray(image, np.uint8))
    except ValueError as error:
        log.warning("no skin mask (%s): lesions are searched on every pixel", error)
        return None


def dilate(mask, radius=DILATION_PX):
    """bool (H, W) mask grown by a disc of ``radius`` pixels."""
    if radius <= 0:
        return np.asarray(mask, bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(np.asarray(mask, np.uint8), kernel).astype(bool)


def mask_probabilities(probabilities, skin, *, dilation=DILATION_PX):
    """Class probabilities with every pixel off the dilated skin set to background.

    Parameters
    ----------
    probabilities : ndarray
        float32 (H, W, 3): P(background), P(benign), P(malignant).
    skin : ndarray
        bool (H, W).
    dilation : int
        Pixels by which the skin is grown first.

    Returns
    -------
    ndarray
        float32 (H, W, 3), a new array; off skin (1, 0, 0).
    """
    probabilities = np.array(probabilities, np.float32)
    if skin.shape != probabilities.shape[:2]:
        raise ValueError(f"skin mask {skin.shape} does not match the heatmap "
                         f"{probabilities.shape[:2]}")
    off = ~dilate(skin, dilation)
    probabilities[off] = (1.0, 0.0, 0.0)
    return probabilities


def on_skin(lesions, instances, skin, *, min_share=MIN_SKIN_SHARE, dilation=DILATION_PX):
    """The lesion records whose centroid lies on the dilated skin and whose pixels mostly on skin.

    Parameters
    ----------
    lesions : list of dict
        Records with ``id`` and ``centroid`` [x, y], ids as in ``instances``.
    instances : ndarray
        integer (H, W) instance map of the proposals.
    skin : ndarray
        bool (H, W).
    min_share : float
        Least share of a lesion's pixels on ``skin``.
    dilation : int
        Pixels by which the skin is grown for the centroid test (a crescent-shaped lesion
        on the skin's edge may have its centroid just off it).

    Returns
    -------
    list of dict
    """
    counts = np.bincount(instances.ravel(), minlength=1)
    on = np.bincount(instances[skin].ravel(), minlength=counts.size)
    grown = dilate(skin, dilation)
    height, width = skin.shape
    kept = []
    for lesion in lesions:
        x, y = lesion["centroid"]
        inside = grown[min(max(int(round(y)), 0), height - 1), min(max(int(round(x)), 0), width - 1)]
        share = on[lesion["id"]] / max(counts[lesion["id"]], 1)
        if inside and share >= min_share:
            kept.append(lesion)
    return kept
