"""The geometric mapping t0 -> t1 of a synthetic pair, and its exact flow ground truth.

Li, Esteva et al. (2016), section 3.2, make the second visit t1 of a synthetic pair by warping
the first visit t0, so dense correspondence ground truth comes for free. The forward mapping
f: t0 -> t1 is defined analytically as a composition (applied right to left)::

    f = H o T o S

* ``S``: similarity about the image centre (rotation, isotropic scale, translation);
* ``T``: smooth non-rigid deformation, a thin-plate spline displacement through a few control
  points with random displacements (:mod:`synth.pairs.spline`);
* ``H``: perspective homography (viewpoint change), made by moving the four image corners.

So the forward flow at every t0 pixel is exact: ``flow(p) = f(p) - p``. Rendering t1 needs the
backward map ``f^-1`` at every t1 pixel: ``S`` and ``H`` are inverted in closed form and ``T``
by the fixed-point iteration ``u_{k+1} = v - d(u_k)``, which converges geometrically because
the spline displacement has a Jacobian norm well below 1 (enforced when drawing, see
:func:`synth.pairs.motion.random_pair_transform`). Forward flow and inverse use the same
lattice-sampled spline, so the two stay consistent to the fixed-point tolerance. The validity
mask marks t0 pixels that land inside the t1 frame where the mapping does not fold (positive
Jacobian determinant).

Sign convention: flow is float32 (H, W, 2), channel 0 = dx (columns), forward t0 -> t1;
``image0[p] ~ image1[p + flow(p)]`` on valid pixels (see :func:`synth.pairs.warp.warp_backward`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np

from synth.pairs.spline import lattice_displacement, spline_lattice

PARAM_KEYS = ("rotation_deg", "scale", "translation", "corner_offsets", "control_points",
              "control_displacements")


def _linear_weights(num_coarse: int, num_fine: int) -> np.ndarray:
    """(num_fine, num_coarse) matrix interpolating linearly from evenly spaced end-aligned samples."""
    position = np.linspace(0, num_coarse - 1, num_fine)
    lower = np.minimum(position.astype(np.intp), num_coarse - 2)
    frac = position - lower
    weights = np.zeros((num_fine, num_coarse))
    weights[np.arange(num_fine), lower] = 1 - frac
    weights[np.arange(num_fine), lower + 1] = frac
    return weights


def _apply_h(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3x3 projective matrix to (N, 2) points."""
    x, y = points[:, 0], points[:, 1]
    (a, b, c), (d, e, f), (g, h, i) = matrix
    w = g * x + h * y + i
    return np.stack([(a * x + b * y + c) / w, (d * x + e * y + f) / w], 1)


@dataclass(frozen=True)
class PairTransform:
    """Forward mapping t0 -> t1 ``f = H o T o S`` of one synthetic pair (see module docstring).

    Build with :func:`synth.pairs.motion.random_pair_transform` or :func:`make_pair_transform`;
    ``params`` is a JSON-serialisable dict from which :meth:`from_params` rebuilds the same
    transform.

    Attributes
    ----------
    size : tuple of int
        (W, H) of both images.
    params : dict
        ``rotation_deg``, ``scale``, ``translation`` [tx, ty] px, ``corner_offsets``
        (4, 2) px (top-left, top-right, bottom-right, bottom-left), ``control_points`` (M, 2)
        px, ``control_displacements`` (M, 2) px.
    """

    size: tuple[int, int]
    params: dict[str, Any]
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_params(cls, size: Sequence[int], params: dict[str, Any]) -> "PairTransform":
        """Rebuild a transform from its ``params`` dict (as stored in a manifest)."""
        return make_pair_transform(size, **{k: v for k, v in params.items() if k in PARAM_KEYS})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description: {"size": [W, H], "params": {...}}."""
        return {"size": list(self.size), "params": self.params}

    @property
    def diagonal(self) -> float:
        """Image diagonal in pixels."""
        return float(math.hypot(*self.size))

    def _similarity(self) -> np.ndarray:
        """3x3 matrix of S: rotate and scale about the centre, then translate."""
        if "S" not in self._cache:
            angle = math.radians(self.params["rotation_deg"])
            scale = self.params["scale"]
            width, height = self.size
            cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
            tx, ty = self.params["translation"]
            a, b = scale * math.cos(angle), scale * math.sin(angle)
            self._cache["S"] = np.array(
                [[a, -b, cx - a * cx + b * cy + tx], [b, a, cy - b * cx - a * cy + ty], [0, 0, 1]]
            )
        return self._cache["S"]

    def _homography(self) -> np.ndarray:
        """3x3 matrix of H from the moved image corners."""
        if "H" not in self._cache:
            width, height = self.size
            src = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float32)
            dst = src + np.asarray(self.params["corner_offsets"], np.float32)
            self._cache["H"] = cv2.getPerspectiveTransform(src, dst).astype(np.float64)
        return self._cache["H"]

    def _lattice(self):
        """T's displacement sampled on a lattice (see :func:`synth.pairs.spline.spline_lattice`)."""
        if "T" not in self._cache:
            centres = np.asarray(self.params["control_points"], np.float64).reshape(-1, 2)
            shifts = np.asarray(self.params["control_displacements"], np.float64).reshape(-1, 2)
            self._cache["T"] = spline_lattice(self.size, centres, shifts)
        return self._cache["T"]

    def spline_displacement(self, points: np.ndarray) -> np.ndarray:
        """T's displacement ``d(u)`` at (N, 2) points of the similarity-mapped frame, px."""
        return lattice_displacement(self._lattice(), points)

    def forward_points(self, points: np.ndarray) -> np.ndarray:
        """Map t0 points to t1.

        Parameters
        ----------
        points : ndarray, shape (N, 2)
            (x, y) pixel coordinates in t0.

        Returns
        -------
        ndarray, float64, shape (N, 2)
            (x, y) in t1.
        """
        points = np.asarray(points, np.float64).reshape(-1, 2)
        u = _apply_h(self._similarity(), points)
        u = u + self.spline_displacement(u)
        return _apply_h(self._homography(), u)

    def inverse_points(
        self, points: np.ndarray, *, num_iterations: int = 30, tolerance: float = 1e-3,
        initial: np.ndarray | None = None,
    ) -> np.ndarray:
        """Map t1 points back to t0 (closed form for S and H, fixed point for T).

        Parameters
        ----------
        points : ndarray, shape (N, 2)
            (x, y) pixel coordinates in t1.
        num_iterations : int
            Maximum fixed-point iterations ``u <- v - d(u)`` inverting the spline.
        tolerance : float
            Stop when no point moves by more than this many pixels.
        initial : ndarray, shape (N, 2), optional
            Starting guess for the answer in t0 (speeds up the iteration).

        Returns
        -------
        ndarray, float64, shape (N, 2)
        """
        points = np.asarray(points, np.float64).reshape(-1, 2)
        v = _apply_h(np.linalg.inv(self._homography()), points)
        if self._lattice() is not None:
            u = v.copy() if initial is None else _apply_h(self._similarity(), initial)
            for _ in range(num_iterations):
                updated = v - self.spline_displacement(u)
                change = np.abs(updated - u).max()
                u = updated
                if change < tolerance:
                    break
        else:
            u = v
        return _apply_h(np.linalg.inv(self._similarity()), u)

    def _grid(self) -> np.ndarray:
        width, height = self.size
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        return np.stack([xs.ravel(), ys.ravel()], axis=1)

    def flow(self) -> np.ndarray:
        """Forward flow t0 -> t1 at every t0 pixel.

        Returns
        -------
        ndarray, float32, shape (H, W, 2)
            Channel 0 = dx, channel 1 = dy, in pixels: ``f(p) - p``.
        """
        if "flow" not in self._cache:
            width, height = self.size
            grid = self._grid()
            self._cache["flow"] = (self.forward_points(grid) - grid).reshape(height, width, 2).astype(np.float32)
        return self._cache["flow"]

    def valid(self) -> np.ndarray:
        """Validity of the forward flow.

        Returns
        -------
        ndarray, bool, shape (H, W)
            True where ``f(p)`` lies inside the t1 frame ([0, W-1] x [0, H-1]) and the mapping
            does not fold there (Jacobian determinant > 0.05).
        """
        if "valid" not in self._cache:
            width, height = self.size
            flow = self.flow().astype(np.float64)
            ys, xs = np.mgrid[0:height, 0:width]
            tx, ty = xs + flow[..., 0], ys + flow[..., 1]
            inside = (tx >= 0) & (tx <= width - 1) & (ty >= 0) & (ty <= height - 1)
            dxdy, dxdx = np.gradient(tx) if min(width, height) > 1 else (np.ones_like(tx),) * 2
            dydy, dydx = np.gradient(ty) if min(width, height) > 1 else (np.ones_like(ty),) * 2
            determinant = dxdx * dydy - dxdy * dydx
            self._cache["valid"] = inside & (determinant > 0.05)
        return self._cache["valid"]

    def backward_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """Backward map for rendering t1 with ``cv2.remap``.

        Returns
        -------
        map_x, map_y : ndarray, float32, shape (H, W)
            For each t1 pixel, the t0 position it comes from.
        """
        if "maps" not in self._cache:
            width, height = self.size
            # Solve on a coarse lattice first, interpolate (separable, exact bilinear), then
            # refine at every pixel: a couple of full-resolution iterations instead of ~10.
            step = 8
            cols = max(2, int(math.ceil((width - 1) / step)) + 1)
            rows = max(2, int(math.ceil((height - 1) / step)) + 1)
            xs, ys = np.linspace(0, width - 1, cols), np.linspace(0, height - 1, rows)
            gx, gy = np.meshgrid(xs, ys)
            coarse = self.inverse_points(np.stack([gx.ravel(), gy.ravel()], 1)).reshape(rows, cols, 2)
            interp_x = _linear_weights(cols, width)
            interp_y = _linear_weights(rows, height)
            initial = np.stack([interp_y @ coarse[..., c] @ interp_x.T for c in range(2)], -1)
            source = self.inverse_points(self._grid(), initial=initial.reshape(-1, 2), num_iterations=2)
            source = source.reshape(height, width, 2).astype(np.float32)
            self._cache["maps"] = (np.ascontiguousarray(source[..., 0]), np.ascontiguousarray(source[..., 1]))
        return self._cache["maps"]

    def coverage(self) -> np.ndarray:
        """t1 pixels whose source lies inside t0.

        Returns
        -------
        ndarray, bool, shape (H, W)
            False where :func:`synth.pairs.warp.warp_image` had to invent content (border
            extrapolation).
        """
        width, height = self.size
        map_x, map_y = self.backward_maps()
        return (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)

    def displacement_stats(self) -> dict[str, float]:
        """Median / 90th percentile / max displacement on valid pixels, in px and as a
        fraction of the image diagonal."""
        magnitude = np.linalg.norm(self.flow(), axis=-1)[self.valid()]
        if magnitude.size == 0:
            magnitude = np.linalg.norm(self.flow(), axis=-1).ravel()
        stats = {
            "median_px": float(np.median(magnitude)),
            "p90_px": float(np.percentile(magnitude, 90)),
            "max_px": float(magnitude.max()),
            "valid_fraction": float(self.valid().mean()),
        }
        for key in ("median", "p90", "max"):
            stats[f"{key}_diag"] = stats[f"{key}_px"] / self.diagonal
        return stats


def make_pair_transform(
    size: Sequence[int],
    *,
    rotation_deg: float = 0.0,
    scale: float = 1.0,
    translation: Sequence[float] = (0.0, 0.0),
    corner_offsets: Sequence[Sequence[float]] | None = None,
    control_points: Sequence[Sequence[float]] | None = None,
    control_displacements: Sequence[Sequence[float]] | None = None,
) -> PairTransform:
    """Build a transform from explicit parameters (all default to the identity).

    Parameters
    ----------
    size : (W, H)
    rotation_deg, scale, translation
        Similarity S about the image centre; translation in pixels (tx, ty).
    corner_offsets : (4, 2) pixels, optional
        Homography H: displacement of the corners top-left, top-right, bottom-right,
        bottom-left.
    control_points, control_displacements : (M, 2) pixels, optional
        Thin-plate spline T: control point positions and their displacements.

    Returns
    -------
    PairTransform
    """
    width, height = (int(v) for v in size)
    if width < 2 or height < 2:
        raise ValueError(f"size must be at least 2x2, got {size}")
    corner = np.zeros((4, 2)) if corner_offsets is None else np.asarray(corner_offsets, float).reshape(4, 2)
    points = np.zeros((0, 2)) if control_points is None else np.asarray(control_points, float).reshape(-1, 2)
    shifts = np.zeros_like(points) if control_displacements is None else np.asarray(control_displacements, float)
    if shifts.shape != points.shape:
        raise ValueError("control_points and control_displacements must have the same shape")
    params = {
        "rotation_deg": float(rotation_deg),
        "scale": float(scale),
        "translation": [float(v) for v in translation],
        "corner_offsets": corner.round(4).tolist(),
        "control_points": points.round(4).tolist(),
        "control_displacements": shifts.round(4).tolist(),
    }
    return PairTransform((width, height), params)


def identity_transform(size: Sequence[int]) -> PairTransform:
    """The identity mapping (zero flow) for images of ``size`` (W, H)."""
    return make_pair_transform(size)
