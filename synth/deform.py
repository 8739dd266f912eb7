"""Between-visit changes for tracking pairs: geometric warp, illumination, lesion evolution.

Li, Esteva et al. (2016), section 3.2, make the second visit t1 of a synthetic pair by warping
the first visit t0, so dense correspondence ground truth comes for free. This module draws
that warp and the other between-visit changes.

Geometry
--------
The forward mapping f: t0 -> t1 is defined analytically as a composition (applied right to
left)::

    f = H o T o S

* ``S``: similarity about the image centre (rotation, isotropic scale, translation);
* ``T``: smooth non-rigid deformation, a thin-plate spline (Bookstein 1989) displacement
  ``d(u) = a0 + a1 x + a2 y + sum_i w_i U(|u - c_i|)``, ``U(r) = r^2 log r``, through a few
  control points ``c_i`` with random displacements, in coordinates normalised by the image
  diagonal;
* ``H``: perspective homography (viewpoint change), made by moving the four image corners.

So the forward flow at every t0 pixel is exact: ``flow(p) = f(p) - p``. Rendering t1 needs the
backward map ``f^-1`` at every t1 pixel: ``S`` and ``H`` are inverted in closed form and ``T``
by the fixed-point iteration ``u_{k+1} = v - d(u_k)``, which converges geometrically because
the spline displacement has a Jacobian norm well below 1 (enforced when drawing). For speed the
spline is sampled once on a lattice (about 96 cells along the diagonal, over twice the frame)
and ``d`` is the bilinear interpolation of that lattice, for the forward flow and the inverse
alike, so the two stay consistent to the fixed-point tolerance. The validity mask marks t0 pixels that land
inside the t1 frame where the mapping does not fold (positive Jacobian determinant).

Sign convention: flow is float32 (H, W, 2), channel 0 = dx (columns), forward t0 -> t1;
``image0[p] ~ image1[p + flow(p)]`` on valid pixels (see :func:`warp_backward`).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

__all__ = [
    "PairTransform",
    "make_pair_transform",
    "identity_transform",
    "random_pair_transform",
    "warp_image",
    "warp_backward",
    "change_illumination",
    "apply_illumination",
    "draw_lesion_changes",
    "LESION_STATES",
]

LESION_STATES = ("same", "grown", "shrunk", "new", "gone")

_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST, "cubic": cv2.INTER_CUBIC}


# --------------------------------------------------------------------------- thin-plate spline


def _tps_kernel(r2: np.ndarray) -> np.ndarray:
    """TPS radial basis U = r^2 log r = 0.5 r^2 log r^2, with U(0) = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 0.5 * r2 * np.log(r2)
    out[r2 <= 1e-12] = 0.0
    return out


def _fit_tps(centres: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Solve the TPS system (Bookstein 1989 eq. 3): returns (M + 3, 2) [w; a] coefficients."""
    m = len(centres)
    r2 = ((centres[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    k = _tps_kernel(r2)
    p = np.hstack([np.ones((m, 1)), centres])
    system = np.zeros((m + 3, m + 3))
    system[:m, :m] = k
    system[:m, m:] = p
    system[m:, :m] = p.T
    rhs = np.zeros((m + 3, 2))
    rhs[:m] = values
    return np.linalg.solve(system, rhs)


def _eval_tps(points: np.ndarray, centres: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """Evaluate a TPS at (N, 2) points, in chunks to bound memory."""
    m = len(centres)
    out = np.empty_like(points)
    c2 = (centres**2).sum(-1)
    for start in range(0, len(points), 131072):
        chunk = points[start : start + 131072]
        r2 = (chunk**2).sum(-1)[:, None] + c2[None, :] - 2.0 * chunk @ centres.T
        np.maximum(r2, 0.0, out=r2)
        out[start : start + len(chunk)] = (
            _tps_kernel(r2) @ coefficients[:m]
            + coefficients[m]
            + chunk @ coefficients[m + 1 :]
        )
    return out


# --------------------------------------------------------------------------- transform


def _linear_weights(num_coarse: int, num_fine: int) -> np.ndarray:
    """(num_fine, num_coarse) matrix interpolating linearly from evenly spaced end-aligned samples."""
    position = np.linspace(0, num_coarse - 1, num_fine)
    lower = np.minimum(position.astype(np.intp), num_coarse - 2)
    frac = position - lower
    weights = np.zeros((num_fine, num_coarse))
    weights[np.arange(num_fine), lower] = 1 - frac
    weights[np.arange(num_fine), lower + 1] = frac
    return weights


@dataclass(frozen=True)
class PairTransform:
    """Forward mapping t0 -> t1 ``f = H o T o S`` of one synthetic pair (see module docstring).

    Build with :func:`random_pair_transform` or :func:`make_pair_transform`; ``params`` is a
    JSON-serialisable dict from which :meth:`from_params` rebuilds the same transform.

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

    # ---- construction helpers
    @classmethod
    def from_params(cls, size: Sequence[int], params: dict[str, Any]) -> "PairTransform":
        """Rebuild a transform from its ``params`` dict (as stored in a manifest)."""
        return make_pair_transform(size, **{k: v for k, v in params.items() if k in _PARAM_KEYS})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description: {"size": [W, H], "params": {...}}."""
        return {"size": list(self.size), "params": self.params}

    # ---- geometry pieces
    @property
    def _centre(self) -> np.ndarray:
        width, height = self.size
        return np.array([(width - 1) / 2.0, (height - 1) / 2.0])

    @property
    def _diagonal(self) -> float:
        return float(math.hypot(*self.size))

    def _similarity(self) -> np.ndarray:
        """3x3 matrix of S: rotate and scale about the centre, then translate."""
        if "S" not in self._cache:
            angle = math.radians(self.params["rotation_deg"])
            scale = self.params["scale"]
            cx, cy = self._centre
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

    def _tps(self) -> tuple[np.ndarray, float, np.ndarray] | None:
        """Lattice of T's displacement: (origin (2,), step, (rows, cols, 2) px) or None."""
        if "T" not in self._cache:
            centres = np.asarray(self.params["control_points"], np.float64).reshape(-1, 2)
            shifts = np.asarray(self.params["control_displacements"], np.float64).reshape(-1, 2)
            if len(centres) == 0 or not np.any(shifts):
                self._cache["T"] = None
            else:
                norm = (centres - self._centre) / self._diagonal
                coefficients = _fit_tps(norm, shifts / self._diagonal)
                # The spline is sampled once on a lattice over twice the frame and T is
                # defined as the bilinear interpolation of that lattice: forward flow and
                # backward map then use one and the same function, at a fraction of the cost
                # of evaluating the spline kernel at every pixel.
                width, height = self.size
                step = max(2.0, self._diagonal / _TPS_LATTICE)
                origin = np.array([-0.5 * width, -0.5 * height])
                xs = origin[0] + step * np.arange(int(math.ceil(2 * width / step)) + 2)
                ys = origin[1] + step * np.arange(int(math.ceil(2 * height / step)) + 2)
                gx, gy = np.meshgrid(xs, ys)
                lattice_points = (np.stack([gx.ravel(), gy.ravel()], 1) - self._centre) / self._diagonal
                values = _eval_tps(lattice_points, norm, coefficients) * self._diagonal
                self._cache["T"] = (origin, step, values.reshape(len(ys), len(xs), 2))
        return self._cache["T"]

    def _tps_displacement(self, points: np.ndarray) -> np.ndarray:
        """T's displacement d(u) at (N, 2) points: bilinear on the lattice, clamped outside."""
        tps = self._tps()
        if tps is None:
            return np.zeros_like(points)
        origin, step, lattice = tps
        rows, cols = lattice.shape[:2]
        gx = np.clip((points[:, 0] - origin[0]) / step, 0, cols - 1)
        gy = np.clip((points[:, 1] - origin[1]) / step, 0, rows - 1)
        coordinates = np.stack([gy, gx])
        # Exact bilinear interpolation (order 1), in C rather than numpy gathers.
        return np.stack([ndimage.map_coordinates(lattice[..., c], coordinates, order=1,
                                                 mode="nearest") for c in range(2)], axis=1)

    @staticmethod
    def _apply_h(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
        x, y = points[:, 0], points[:, 1]
        (a, b, c), (d, e, f), (g, h, i) = matrix
        w = g * x + h * y + i
        return np.stack([(a * x + b * y + c) / w, (d * x + e * y + f) / w], 1)

    # ---- public mappings
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
        u = self._apply_h(self._similarity(), points)
        u = u + self._tps_displacement(u)
        return self._apply_h(self._homography(), u)

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
        v = self._apply_h(np.linalg.inv(self._homography()), points)
        if self._tps() is not None:
            u = v.copy() if initial is None else self._apply_h(self._similarity(), initial)
            for _ in range(num_iterations):
                updated = v - self._tps_displacement(u)
                change = np.abs(updated - u).max()
                u = updated
                if change < tolerance:
                    break
        else:
            u = v
        return self._apply_h(np.linalg.inv(self._similarity()), u)

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
            False where :func:`warp_image` had to invent content (border extrapolation).
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
            stats[f"{key}_diag"] = stats[f"{key}_px"] / self._diagonal
        return stats


_TPS_LATTICE = 96  # lattice cells along the image diagonal
_PARAM_KEYS = ("rotation_deg", "scale", "translation", "corner_offsets", "control_points", "control_displacements")


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
        if _tps_lipschitz(transform) < 0.5:
            break
        shifts = shifts * 0.7
    transform.params["strength"] = float(strength)
    return transform


def _tps_lipschitz(transform: PairTransform) -> float:
    """Largest Jacobian norm of the spline displacement on a coarse grid over the frame."""
    width, height = transform.size
    xs = np.linspace(-0.2 * width, 1.2 * width, 48)
    ys = np.linspace(-0.2 * height, 1.2 * height, 48)
    gx, gy = np.meshgrid(xs, ys)
    points = np.stack([gx.ravel(), gy.ravel()], 1)
    d = transform._tps_displacement(points).reshape(48, 48, 2)
    ddy = np.gradient(d, ys, axis=0)
    ddx = np.gradient(d, xs, axis=1)
    jac = np.stack([ddx, ddy], -1)  # (48, 48, 2 comps, 2 derivs)
    return float(np.linalg.norm(jac, ord=2, axis=(-2, -1)).max())


# --------------------------------------------------------------------------- rendering


def _interp_flag(interpolation: str | int) -> int:
    if isinstance(interpolation, str):
        if interpolation not in _INTERPOLATION:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATION)}, got {interpolation!r}")
        return _INTERPOLATION[interpolation]
    return int(interpolation)


def _remap(image: np.ndarray, map_x, map_y, interpolation, border_mode, border_value) -> np.ndarray:
    """cv2.remap for any dtype / channel count OpenCV accepts, uint16 and bool included."""
    flag = _interp_flag(interpolation)
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


# --------------------------------------------------------------------------- illumination


def _illumination_gain(size: Sequence[int], params: dict[str, Any]) -> np.ndarray:
    """(H, W, 3) float gain field from illumination params."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    u = (xs - (width - 1) / 2) / max(width, height)
    v = (ys - (height - 1) / 2) / max(width, height)
    angle = math.radians(params["gradient_angle_deg"])
    log_gain = params["gradient"] * (u * math.cos(angle) + v * math.sin(angle)) + params["brightness"]
    for blob in params["blobs"]:
        bx, by, radius, amplitude = blob
        log_gain = log_gain + amplitude * np.exp(-((u - bx) ** 2 + (v - by) ** 2) / (2 * radius**2))
    gain = np.exp(log_gain)[..., None] * np.asarray(params["colour_gains"], np.float64)
    return gain


def apply_illumination(image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Apply an illumination change described by ``params`` (from :func:`change_illumination`).

    Parameters
    ----------
    image : ndarray, uint8, shape (H, W, 3)

    Returns
    -------
    ndarray, uint8, shape (H, W, 3)
    """
    height, width = image.shape[:2]
    gain = _illumination_gain((width, height), params)
    return np.clip(image.astype(np.float64) * gain + 0.5, 0, 255).astype(np.uint8)


def change_illumination(
    image: np.ndarray,
    *,
    rng: np.random.Generator,
    strength: float = 1.0,
    gradient_sigma: float = 0.25,
    brightness_sigma: float = 0.08,
    temperature_sigma: float = 0.05,
    num_blobs: int = 2,
    blob_sigma: float = 0.12,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Smooth illumination and colour-temperature change between visits.

    A low-frequency multiplicative gain field: ``exp(linear gradient + brightness + Gaussian
    blobs)`` times per-channel gains (warm / cool white balance).

    Parameters
    ----------
    image : ndarray, uint8, shape (H, W, 3)
    rng : numpy.random.Generator
    strength : float
        Multiplies every amplitude (0 = no change).
    gradient_sigma : float
        Log-gain change across the image along a random direction ~ N(0, sigma).
    brightness_sigma : float
        Global log-gain ~ N(0, sigma).
    temperature_sigma : float
        Colour temperature: red log-gain +t, blue -t, t ~ N(0, sigma).
    num_blobs, blob_sigma : int, float
        Broad Gaussian highlights/shadows with log amplitude ~ N(0, blob_sigma).

    Returns
    -------
    image : ndarray, uint8, shape (H, W, 3)
    params : dict
        JSON-serialisable; :func:`apply_illumination` reproduces the change.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
    temperature = float(rng.normal(0, temperature_sigma)) * strength
    tint = float(rng.normal(0, temperature_sigma / 3)) * strength
    blobs = [
        [float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.5, 0.5)),
         float(rng.uniform(0.15, 0.4)), float(rng.normal(0, blob_sigma)) * strength]
        for _ in range(num_blobs)
    ]
    params = {
        "gradient": float(rng.normal(0, gradient_sigma)) * strength,
        "gradient_angle_deg": float(rng.uniform(0, 360)),
        "brightness": float(rng.normal(0, brightness_sigma)) * strength,
        "colour_gains": [math.exp(temperature), math.exp(tint), math.exp(-temperature)],
        "blobs": blobs,
    }
    return apply_illumination(image, params), params


# --------------------------------------------------------------------------- lesion changes


def draw_lesion_changes(
    num_lesions: int,
    *,
    rng: np.random.Generator,
    malignant: Sequence[bool] | None = None,
    p_new: float = 0.08,
    p_gone: float = 0.04,
    p_grown: float = 0.2,
    p_shrunk: float = 0.08,
    malignant_growth_boost: float = 2.0,
    max_growth: float = 1.35,
    min_shrink: float = 0.75,
    colour_shift_sigma: float = 6.0,
) -> list[dict[str, Any]]:
    """Plan how each lesion changes between t0 and t1.

    The synthesizer blends each lesion separately into t0 and t1 following this plan:
    "same" (present in both, scale 1), "grown" / "shrunk" (present in both, resized by
    ``scale`` in t1), "new" (absent from t0, present in t1), "gone" (present in t0, absent from
    t1). ``colour_shift`` is an additive RGB change applied to the lesion in t1 (negative =
    darker), drawn for every state but mostly darkening for malignant lesions.

    Parameters
    ----------
    num_lesions : int
    rng : numpy.random.Generator
    malignant : sequence of bool, optional
        Per lesion; malignant lesions grow ``malignant_growth_boost`` times more often and
        darken on average.
    p_new, p_gone, p_grown, p_shrunk : float
        Probabilities of each state; the rest is "same".
    max_growth, min_shrink : float
        Scale ranges: grown ~ U(1.08, max_growth), shrunk ~ U(min_shrink, 0.93).
    colour_shift_sigma : float
        Per-channel colour change ~ N(mean, sigma) grey levels.

    Returns
    -------
    list of dict
        One per lesion: {"state": str, "scale": float, "colour_shift": [dr, dg, db]}.
    """
    if malignant is not None and len(malignant) != num_lesions:
        raise ValueError(f"malignant has {len(malignant)} entries for {num_lesions} lesions")
    plans = []
    for index in range(num_lesions):
        is_malignant = bool(malignant[index]) if malignant is not None else False
        grown = min(p_grown * (malignant_growth_boost if is_malignant else 1.0), 0.9)
        probabilities = np.array([p_new, p_gone, grown, p_shrunk])
        probabilities = np.append(probabilities, max(0.0, 1.0 - probabilities.sum()))
        probabilities /= probabilities.sum()
        state = ("new", "gone", "grown", "shrunk", "same")[int(rng.choice(5, p=probabilities))]
        if state == "grown":
            scale = float(rng.uniform(1.08, max_growth))
        elif state == "shrunk":
            scale = float(rng.uniform(min_shrink, 0.93))
        else:
            scale = 1.0
        mean = -6.0 if is_malignant else 0.0
        shift = rng.normal(mean, colour_shift_sigma, 3) + rng.normal(0, colour_shift_sigma / 2)
        plans.append({"state": state, "scale": round(scale, 4), "colour_shift": [round(float(v), 2) for v in shift]})
    return plans
