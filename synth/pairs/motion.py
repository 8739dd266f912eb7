"""Random motion between two visits: viewpoint, body pose and skin deformation.

Draws the parameters of a :class:`synth.pairs.transform.PairTransform` (similarity,
perspective corners, thin-plate spline control points) at amplitudes that match the large
deformations of real follow-up photos.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from synth.pairs.transform import PairTransform, make_pair_transform


def random_pair_transform(
    size: Sequence[int],
    *,
    rng: np.random.Generator,
    strength: float = 1.0,
    max_rotation_deg: float = 25.0,
    rotation_sigma_deg: float = 7.0,
    scale_sigma: float = 0.07,
    translation_sigma: float = 0.035,
    perspective: float = 0.06,
    num_control: int = 4,
    tps_sigma: float = 0.018,
) -> PairTransform:
    """Draw a random viewpoint + non-rigid change between two visits.

    At ``strength=1`` the median displacement over valid pixels is about 5-9 % of the image
    diagonal (measured over 200 draws: median of medians about 6.5 %, 90th percentile of the
    per-pair median about 10 %) with a per-pixel tail to about 15 %; every amplitude below is
    multiplied by ``strength`` (0 gives the identity).

    Parameters
    ----------
    size : (W, H)
        Image size in pixels.
    rng : numpy.random.Generator
        Source of randomness.
    strength : float
        Multiplies every amplitude.
    max_rotation_deg, rotation_sigma_deg : float
        Rotation ~ N(0, sigma), clipped.
    scale_sigma : float
        log(scale) ~ N(0, sigma).
    translation_sigma : float
        Translation ~ N(0, sigma * diagonal) per axis.
    perspective : float
        Each image corner moves by U(-p, p) times the image width / height (viewpoint change).
    num_control : int
        Thin-plate spline control points on a jittered ``num_control x num_control`` grid.
    tps_sigma : float
        Control point displacement ~ N(0, sigma * diagonal) per axis; shrunk if the spline
        would fold or be too hard to invert.

    Returns
    -------
    PairTransform
    """
    width, height = (int(v) for v in size)
    diagonal = math.hypot(width, height)
    rotation = float(np.clip(rng.normal(0, rotation_sigma_deg), -max_rotation_deg, max_rotation_deg)) * strength
    scale = float(math.exp(np.clip(rng.normal(0, scale_sigma), -3 * scale_sigma, 3 * scale_sigma) * strength))
    translation = rng.normal(0, translation_sigma * diagonal, 2) * strength
    corners = rng.uniform(-perspective, perspective, (4, 2)) * np.array([width, height]) * strength
    # Control points on a jittered grid spanning slightly beyond the frame (the spline is
    # evaluated in the similarity-transformed frame, which may reach outside).
    steps = np.linspace(-0.1, 1.1, num_control)
    gx, gy = np.meshgrid(steps, steps)
    spacing = 1.2 / max(num_control - 1, 1)
    jitter = rng.uniform(-0.25 * spacing, 0.25 * spacing, (num_control * num_control, 2))
    unit = np.stack([gx.ravel(), gy.ravel()], 1) + jitter
    points = unit * np.array([width - 1, height - 1])
    shifts = rng.normal(0, tps_sigma * diagonal, points.shape) * strength
    # Keep the spline invertible by fixed point: its Jacobian norm must stay well below 1.
    for _ in range(8):
        transform = make_pair_transform(
            (width, height), rotation_deg=rotation, scale=scale, translation=translation,
            corner_offsets=corners, control_points=points, control_displacements=shifts,
        )
        if spline_lipschitz(transform) < 0.5:
            break
        shifts = shifts * 0.7
    transform.params["strength"] = float(strength)
    return transform


def spline_lipschitz(transform: PairTransform) -> float:
    """Largest Jacobian norm (spectral) of the transform's spline displacement, on a 48x48
    grid over the frame and a fifth of it beyond each side."""
    width, height = transform.size
    xs = np.linspace(-0.2 * width, 1.2 * width, 48)
    ys = np.linspace(-0.2 * height, 1.2 * height, 48)
    gx, gy = np.meshgrid(xs, ys)
    points = np.stack([gx.ravel(), gy.ravel()], 1)
    d = transform.spline_displacement(points).reshape(48, 48, 2)
    ddy = np.gradient(d, ys, axis=0)
    ddx = np.gradient(d, xs, axis=1)
    jac = np.stack([ddx, ddy], -1)  # (48, 48, 2 comps, 2 derivs)
    return float(np.linalg.norm(jac, ord=2, axis=(-2, -1)).max())
