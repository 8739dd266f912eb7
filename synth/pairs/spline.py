"""Thin-plate spline displacement (Bookstein 1989), sampled once on a lattice.

The non-rigid part ``T`` of a pair's mapping is the displacement
``d(u) = a0 + a1 x + a2 y + sum_i w_i U(|u - c_i|)``, ``U(r) = r^2 log r``, through a few
control points ``c_i``, in coordinates normalised by the image diagonal. For speed it is
sampled once on a lattice (about 96 cells along the diagonal, over twice the frame) and ``d``
is the bilinear interpolation of that lattice: the forward flow and the inverse mapping use
one and the same function, at a fraction of the cost of the kernel at every pixel.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

LATTICE_CELLS = 96  # lattice cells along the image diagonal


def tps_kernel(r2: np.ndarray) -> np.ndarray:
    """TPS radial basis U = r^2 log r = 0.5 r^2 log r^2 of squared distances, with U(0) = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 0.5 * r2 * np.log(r2)
    out[r2 <= 1e-12] = 0.0
    return out


def fit_tps(centres: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Solve the TPS system (Bookstein 1989 eq. 3).

    Parameters
    ----------
    centres : ndarray, float64, shape (M, 2)
        Control points.
    values : ndarray, float64, shape (M, 2)
        Displacement at each control point.

    Returns
    -------
    ndarray, float64, shape (M + 3, 2)
        Coefficients ``[w; a]``: M kernel weights, then the affine part a0, a1, a2.
    """
    m = len(centres)
    r2 = ((centres[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    k = tps_kernel(r2)
    p = np.hstack([np.ones((m, 1)), centres])
    system = np.zeros((m + 3, m + 3))
    system[:m, :m] = k
    system[:m, m:] = p
    system[m:, :m] = p.T
    rhs = np.zeros((m + 3, 2))
    rhs[:m] = values
    return np.linalg.solve(system, rhs)


def evaluate_tps(points: np.ndarray, centres: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """Evaluate a fitted TPS at ``points`` (N, 2), in chunks to bound memory; returns (N, 2)."""
    m = len(centres)
    out = np.empty_like(points)
    c2 = (centres**2).sum(-1)
    for start in range(0, len(points), 131072):
        chunk = points[start : start + 131072]
        r2 = (chunk**2).sum(-1)[:, None] + c2[None, :] - 2.0 * chunk @ centres.T
        np.maximum(r2, 0.0, out=r2)
        out[start : start + len(chunk)] = (
            tps_kernel(r2) @ coefficients[:m]
            + coefficients[m]
            + chunk @ coefficients[m + 1 :]
        )
    return out


def spline_lattice(size, control_points: np.ndarray, control_displacements: np.ndarray):
    """Sample the TPS through the control points on a lattice over twice the frame.

    Parameters
    ----------
    size : (W, H)
        Image size in pixels.
    control_points, control_displacements : ndarray, float64, shape (M, 2)
        Control point positions and their displacements, in pixels.

    Returns
    -------
    tuple or None
        ``(origin, step, values)``: lattice origin (2,) px, spacing in px and the displacement
        float64 (rows, cols, 2) px at every lattice node; None when no control point moves.
    """
    if len(control_points) == 0 or not np.any(control_displacements):
        return None
    width, height = size
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    diagonal = float(math.hypot(*size))
    norm = (control_points - centre) / diagonal
    coefficients = fit_tps(norm, control_displacements / diagonal)
    step = max(2.0, diagonal / LATTICE_CELLS)
    origin = np.array([-0.5 * width, -0.5 * height])
    xs = origin[0] + step * np.arange(int(math.ceil(2 * width / step)) + 2)
    ys = origin[1] + step * np.arange(int(math.ceil(2 * height / step)) + 2)
    gx, gy = np.meshgrid(xs, ys)
    lattice_points = (np.stack([gx.ravel(), gy.ravel()], 1) - centre) / diagonal
    values = evaluate_tps(lattice_points, norm, coefficients) * diagonal
    return origin, step, values.reshape(len(ys), len(xs), 2)


def lattice_displacement(lattice, points: np.ndarray) -> np.ndarray:
    """Displacement at ``points`` (N, 2) px: bilinear on a :func:`spline_lattice`, clamped
    outside it; returns float64 (N, 2) px (zeros when ``lattice`` is None)."""
    if lattice is None:
        return np.zeros_like(points)
    origin, step, values = lattice
    rows, cols = values.shape[:2]
    gx = np.clip((points[:, 0] - origin[0]) / step, 0, cols - 1)
    gy = np.clip((points[:, 1] - origin[1]) / step, 0, rows - 1)
    coordinates = np.stack([gy, gx])
    # Exact bilinear interpolation (order 1), in C rather than numpy gathers.
    return np.stack([ndimage.map_coordinates(values[..., c], coordinates, order=1,
                                             mode="nearest") for c in range(2)], axis=1)
