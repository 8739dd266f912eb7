"""Rendering with a pair's mapping: t1 from t0 (backward map), and t1 back onto t0 by a flow."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from synth.pairs.transform import PairTransform

INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST, "cubic": cv2.INTER_CUBIC}


def _interpolation_flag(interpolation: str | int) -> int:
    """The cv2 flag of an interpolation name (or the flag itself)."""
    if isinstance(interpolation, str):
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}")
        return INTERPOLATIONS[interpolation]
    return int(interpolation)


def _remap(image: np.ndarray, map_x, map_y, interpolation, border_mode, border_value) -> np.ndarray:
    """cv2.remap for any dtype / channel count OpenCV accepts, uint16 and bool included."""
    flag = _interpolation_flag(interpolation)
    dtype = image.dtype
    work = image.astype(np.uint8) if dtype == bool else image
    if work.ndim == 3 and work.shape[2] > 4:
        out = np.stack([_remap(work[..., c], map_x, map_y, interpolation, border_mode, border_value)
                        for c in range(work.shape[2])], -1)
    else:
        value = border_value if np.isscalar(border_value) else tuple(border_value)
        out = cv2.remap(work, map_x, map_y, flag, borderMode=border_mode, borderValue=value)
    return out.astype(bool) if dtype == bool else out


def warp_image(
    image: np.ndarray,
    transform: PairTransform,
    *,
    interpolation: str | int = "linear",
    border_mode: int = cv2.BORDER_REFLECT_101,
    border_value: float | Sequence[float] = 0,
) -> np.ndarray:
    """Render t1 from t0: ``image1[q] = image0[f^-1(q)]``.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        t0 image, label map (uint8) or instance map (uint16).
    transform : PairTransform
        Its ``size`` must be (W, H) of ``image``.
    interpolation : {"linear", "nearest", "cubic"} or cv2 flag
        Use "nearest" for label and instance maps.
    border_mode, border_value
        Passed to ``cv2.remap`` for t1 pixels whose source lies outside t0
        (see :meth:`PairTransform.coverage`). For label maps, ``cv2.BORDER_CONSTANT`` with 255
        (ignore) is a safe choice.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``.
    """
    height, width = image.shape[:2]
    if (width, height) != tuple(transform.size):
        raise ValueError(f"image size {(width, height)} does not match transform size {transform.size}")
    map_x, map_y = transform.backward_maps()
    return _remap(image, map_x, map_y, interpolation, border_mode, border_value)


def warp_backward(
    image1: np.ndarray,
    flow: np.ndarray,
    *,
    interpolation: str | int = "linear",
    border_mode: int = cv2.BORDER_REPLICATE,
    border_value: float | Sequence[float] = 0,
) -> np.ndarray:
    """Sample t1 at ``p + flow(p)``: brings t1 back onto the t0 grid.

    Parameters
    ----------
    image1 : ndarray, shape (H, W) or (H, W, C)
    flow : ndarray, float32, shape (H, W, 2)
        Forward flow t0 -> t1, channel 0 = dx.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image1``; equals t0 on valid pixels when the flow is exact.
    """
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[:2] != image1.shape[:2]:
        raise ValueError(f"flow shape {flow.shape} does not match image shape {image1.shape[:2]} + (2,)")
    height, width = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x = xs + flow[..., 0].astype(np.float32)
    map_y = ys + flow[..., 1].astype(np.float32)
    return _remap(image1, map_x, map_y, interpolation, border_mode, border_value)
