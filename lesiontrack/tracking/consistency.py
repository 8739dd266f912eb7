"""Per-pixel confidence of a flow from forward-backward consistency.

A point x of image 0 carried to image 1 by the forward flow f and back by the backward flow b
should return to where it started: ``f(x) + b(x + f(x)) = 0``. Where the two flows disagree the
correspondence is unreliable (occlusion, a region that left the frame, or a wrong match).
Following Sundaram, Brox and Keutzer ("Dense point trajectories by GPU-accelerated large
displacement optical flow", ECCV 2010, eq. 5) and its use as an occlusion test in UnFlow
(Meister, Hur and Roth, AAAI 2018, sec. 3.1), the discrepancy is measured relative to the
flows' own magnitude::

    r(x) = |f(x) + b^(x)|^2 / (alpha1 (|f(x)|^2 + |b^(x)|^2) + alpha2),   b^(x) = b(x + f(x))

(UnFlow: a pixel is inconsistent when r > 1, with alpha1 = 0.01 and alpha2 = 0.5 px^2). The
confidence is ``exp(-r)``: 1 for perfectly consistent flows, e^-1 = 0.37 at UnFlow's
threshold, near 0 far beyond it, and 0 where x + f(x) leaves image 1 (nothing to check).
"""
from __future__ import annotations

import numpy as np

from lesiontrack.imaging import check_image, sample_flow

ALPHA1 = 0.01
ALPHA2 = 0.5
# Confidence below which a lesion's flow is reported as unreliable: UnFlow's threshold r = 1.
RELIABLE = float(np.exp(-1.0))


def forward_backward_confidence(forward, backward, *, alpha1=ALPHA1, alpha2=ALPHA2) -> np.ndarray:
    """Confidence in [0, 1] of each pixel of a forward flow, from the backward flow.

    Parameters
    ----------
    forward : ndarray, float (H, W, 2)
        Flow image0 -> image1 in image1's pixels, channel 0 = dx.
    backward : ndarray, float (H1, W1, 2)
        Flow image1 -> image0 in image0's pixels.
    alpha1, alpha2 : float
        Relative and absolute (px^2) tolerance of the discrepancy (module docstring).

    Returns
    -------
    ndarray, float32 (H, W)
        ``exp(-r)``; 0 where ``x + f(x)`` falls outside image1.

    Raises
    ------
    ValueError
        When a flow is not (H, W, 2).
    """
    forward = np.asarray(forward, np.float64)
    backward = np.asarray(backward, np.float64)
    for name, flow in (("forward", forward), ("backward", backward)):
        if flow.ndim != 3 or flow.shape[2] != 2:
            raise ValueError(f"{name} flow must be (H, W, 2), got {flow.shape}")
    height, width = forward.shape[:2]
    height1, width1 = backward.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    targets = np.stack([xs + forward[..., 0], ys + forward[..., 1]], -1).reshape(-1, 2)
    returned = sample_flow(backward, targets).reshape(height, width, 2)
    discrepancy = ((forward + returned) ** 2).sum(-1)
    magnitude = (forward ** 2).sum(-1) + (returned ** 2).sum(-1)
    confidence = np.exp(-discrepancy / (alpha1 * magnitude + alpha2))
    inside = ((targets[:, 0] >= 0) & (targets[:, 0] <= width1 - 1)
              & (targets[:, 1] >= 0) & (targets[:, 1] <= height1 - 1)).reshape(height, width)
    return np.where(inside, confidence, 0.0).astype(np.float32)


def flow_with_confidence(image0, image1, *, method="net", **options):
    """Forward flow image0 -> image1 and its forward-backward confidence.

    Runs :func:`lesiontrack.tracking.flow.estimate_flow` both ways (twice the time).

    Parameters
    ----------
    image0, image1 : ndarray, uint8 (H, W, 3), (H1, W1, 3)
        RGB photos.
    method : str
        A method of :func:`lesiontrack.tracking.flow.estimate_flow`.
    **options
        Its keyword options (``weights`` for ``"net"``).

    Returns
    -------
    flow : ndarray, float32 (H, W, 2)
        As :func:`lesiontrack.tracking.flow.estimate_flow`.
    confidence : ndarray, float32 (H, W)
        :func:`forward_backward_confidence` of that flow.
    """
    from lesiontrack.tracking.flow import estimate_flow

    image0 = check_image(image0, "image0")
    image1 = check_image(image1, "image1")
    forward = estimate_flow(image0, image1, method=method, **options)
    backward = estimate_flow(image1, image0, method=method, **options)
    return forward, forward_backward_confidence(forward, backward)


def region_confidence(confidence, boxes) -> np.ndarray:
    """Mean confidence inside each box ``[x, y, w, h]`` (pixels; clipped to the image).

    Parameters
    ----------
    confidence : ndarray, float (H, W)
    boxes : array-like (N, 4)

    Returns
    -------
    ndarray, float64 (N,)
        0 for a box entirely outside the image.
    """
    confidence = np.asarray(confidence, np.float64)
    height, width = confidence.shape
    values = []
    for x, y, w, h in np.asarray(boxes, np.float64).reshape(-1, 4):
        left, top = int(max(0, np.floor(x))), int(max(0, np.floor(y)))
        right, bottom = int(min(width, np.ceil(x + w))), int(min(height, np.ceil(y + h)))
        values.append(confidence[top:bottom, left:right].mean() if right > left and bottom > top
                      else 0.0)
    return np.asarray(values, np.float64)
