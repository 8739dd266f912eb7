"""Where to put lesions: sites whose local skin matches the lesion's own surrounding skin.

Li, Esteva et al. (2016, sec. 2) place lesions on body photos at locations whose local
features match.  Here a site is described by the skin in a square window around it: CIELAB
mean and standard deviation (colour and its variation) and the mean and standard deviation
of the L* gradient magnitude (texture: hair, pores, freckles).  The statistics are computed
over skin pixels only, from integral images, so any number of candidates costs O(1) each.

A lesion is described by the same features where they can be measured (NaN elsewhere; the
distance ignores NaN features, see :func:`descriptor_distance`):

* crops that carry surrounding skin (ISIC-style): a ring just outside the lesion mask gives
  all features;
* crops that are black outside the mask (PAD-UFES-20): only colour can be estimated.  The
  patient's Fitzpatrick type, when known, gives the skin colour prior of
  :data:`synth.augment.SKIN_LAB` (the lesion's rim is lesion, not skin, so a known type is
  preferred); otherwise the mean colour of the lesion's rim just inside the mask edge is used,
  the closest the crop has to the surrounding skin.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

from synth.augment import SKIN_LAB

logger = logging.getLogger(__name__)

#: Feature names of a descriptor, in order.
DESCRIPTOR_NAMES = ("L_mean", "a_mean", "b_mean", "L_std", "a_std", "b_std",
                    "gradient_mean", "gradient_std")
#: Default feature weights of the distance: colour means count most.
DEFAULT_WEIGHTS = (1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5)


def _pixel_features(image: np.ndarray) -> np.ndarray:
    """Per-pixel L*, a*, b*, gradient magnitude of L* as float32 (H, W, 4)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    # The 8-bit conversion is several times faster than float and precise enough here:
    # L* = L8 * 100 / 255, a* = a8 - 128, b* = b8 - 128.
    lab = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2LAB)
    lab = lab.astype(np.float32) - np.float32([0.0, 128.0, 128.0])
    lab[..., 0] *= np.float32(100.0 / 255.0)
    lightness = lab[..., 0]
    gx = cv2.Sobel(lightness, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lightness, cv2.CV_32F, 0, 1, ksize=3)
    # Sobel sums 8 weighted differences: divide to get L* per pixel.
    gradient = cv2.magnitude(gx, gy) / np.float32(8.0)
    return np.concatenate([lab, gradient[..., None]], axis=2)


def _stats(features: np.ndarray) -> np.ndarray:
    """Descriptor (8,) of the rows of features (n, 4): means then stds."""
    if features.shape[0] == 0:
        return np.full(len(DESCRIPTOR_NAMES), np.nan, np.float32)
    mean = features.mean(axis=0)
    std = features.std(axis=0)
    return np.array([mean[0], mean[1], mean[2], std[0], std[1], std[2], mean[3], std[3]],
                    np.float32)


class _WindowStats:
    """Integral images of skin-masked features, for fast window statistics.

    With ``cell_px`` > 1 the sums of features, squared features and skin counts are first
    pooled over cells of cell_px x cell_px pixels (pooling sums keeps means and variances
    exact; only the window edges snap to the cell grid), which makes large images cheaper.
    """

    def __init__(self, image: np.ndarray, skin_mask: np.ndarray, *, cell_px: int = 1):
        features = _pixel_features(image)
        skin = np.asarray(skin_mask, bool)
        if skin.shape != features.shape[:2]:
            raise ValueError("skin_mask and image differ in size")
        weight = skin.astype(np.float32)
        masked = features * weight[..., None]
        tables = [masked[..., :3], masked[..., 3:], masked[..., :3] * features[..., :3],
                  masked[..., 3:] * features[..., 3:], weight]
        self.shape = skin.shape
        self.cell = max(int(cell_px), 1)
        if self.cell > 1:
            # Area resampling averages each cell; means and mean squares stay exact (the
            # common factor cell_px^2 cancels in the ratios below).
            height, width = skin.shape
            size = (-(-width // self.cell), -(-height // self.cell))
            pad = ((0, size[1] * self.cell - height), (0, size[0] * self.cell - width))
            tables = [cv2.resize(np.pad(t, pad + ((0, 0),) * (t.ndim - 2)), size,
                                 interpolation=cv2.INTER_AREA) for t in tables]
        # Integral images (float64) with a zero first row and column: sums over
        # [y0, y1) x [x0, x1) are four look-ups.
        self.integrals = [cv2.integral(np.ascontiguousarray(t), sdepth=cv2.CV_64F)
                          for t in tables]
        self.integrals = [t if t.ndim == 3 else t[..., None] for t in self.integrals]

    def describe(self, centers: np.ndarray, radius: float) -> np.ndarray:
        """Descriptors (N, 8) of the skin in squares of half-size `radius` about `centers`."""
        centers = np.asarray(centers, np.int64).reshape(-1, 2)
        half = int(np.ceil(radius))
        cell = self.cell
        rows, cols = self.integrals[0].shape[0] - 1, self.integrals[0].shape[1] - 1
        x0 = np.clip((centers[:, 0] - half) // cell, 0, cols)
        x1 = np.clip(-(-(centers[:, 0] + half + 1) // cell), 0, cols)
        y0 = np.clip((centers[:, 1] - half) // cell, 0, rows)
        y1 = np.clip(-(-(centers[:, 1] + half + 1) // cell), 0, rows)
        sums = np.concatenate([table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
                               for table in self.integrals], axis=1)
        count = sums[:, 8:9]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums[:, 0:4] / count
            variance = np.maximum(sums[:, 4:8] / count - mean ** 2, 0.0)
        std = np.sqrt(variance)
        out = np.stack([mean[:, 0], mean[:, 1], mean[:, 2], std[:, 0], std[:, 1], std[:, 2],
                        mean[:, 3], std[:, 3]], axis=1)
        out[~(count[:, 0] > 1e-6)] = np.nan
        return out.astype(np.float32)


def site_descriptors(image: np.ndarray, skin_mask: np.ndarray, centers, radius: float) -> np.ndarray:
    """Describe the skin around candidate sites.

    Parameters
    ----------
    image : ndarray
        uint8 (H, W, 3) RGB body photo.
    skin_mask : ndarray
        bool (H, W); only skin pixels enter the statistics.
    centers : array_like
        (N, 2) site centres (x, y) in pixels.
    radius : float
        Half-size of the square window (pixels).

    Returns
    -------
    ndarray
        float32 (N, 8): CIELAB mean (3), CIELAB std (3), mean and std of the L* gradient
        magnitude (see :data:`DESCRIPTOR_NAMES`); NaN rows where the window holds no skin.
    """
    return _WindowStats(image, skin_mask).describe(centers, radius)


def lesion_descriptor(lesion_image: np.ndarray, lesion_mask: np.ndarray, *, fitzpatrick=None,
                      ring_px: int = None, rim_px: int = 2, min_skin_fraction: float = 0.8,
                      black_level: float = 8.0) -> np.ndarray:
    """Describe the skin a lesion came from, comparable with :func:`site_descriptors`.

    Parameters
    ----------
    lesion_image : ndarray
        uint8 (h, w, 3) RGB crop.
    lesion_mask : ndarray
        bool (h, w), True = lesion.
    fitzpatrick : int or str, optional
        Patient's Fitzpatrick type (1..6 or 'I'..'VI'); used when the crop has no skin
        around the lesion.
    ring_px : int, optional
        Width of the ring outside the mask; default max(3, 15 % of the crop's longest side).
    rim_px : int
        Width of the rim inside the mask edge used when there is neither skin nor type.
    min_skin_fraction : float
        Fraction of ring pixels that must be non-black for the ring to count as skin.
    black_level : float
        Ring pixels whose channel maximum is at or below this are "no data".

    Returns
    -------
    ndarray
        float32 (8,), NaN for features that cannot be measured (std and texture when only the
        colour is known).
    """
    image = np.asarray(lesion_image)
    mask = np.asarray(lesion_mask, bool)
    if mask.shape != image.shape[:2]:
        raise ValueError("lesion_mask and lesion_image differ in size")
    if not mask.any():
        raise ValueError("empty lesion mask")
    if ring_px is None:
        ring_px = max(3, int(round(0.15 * max(mask.shape))))
    features = _pixel_features(image)
    mask8 = mask.astype(np.uint8)
    ring = (cv2.dilate(mask8, np.ones((3, 3), np.uint8), iterations=ring_px) > 0) & ~mask
    # Skip the pixel right at the edge (interpolation and JPEG mix lesion and background).
    ring &= ~(cv2.dilate(mask8, np.ones((3, 3), np.uint8)) > 0)
    valid = ring & (image.max(axis=2) > black_level)
    if ring.sum() >= 8 and valid.sum() >= min_skin_fraction * ring.sum():
        return _stats(features[valid])
    descriptor = np.full(len(DESCRIPTOR_NAMES), np.nan, np.float32)
    if fitzpatrick is not None:
        from synth.augment import _parse_type

        descriptor[:3] = SKIN_LAB[_parse_type(fitzpatrick)]
        return descriptor
    inner = cv2.erode(mask8, np.ones((3, 3), np.uint8)) > 0
    if not inner.any():
        inner = mask
    rim = inner & ~(cv2.erode(inner.astype(np.uint8), np.ones((3, 3), np.uint8),
                              iterations=rim_px) > 0)
    if not rim.any():
        rim = inner
    descriptor[:3] = features[rim][:, :3].mean(axis=0)
    return descriptor


def descriptor_distance(lesion: np.ndarray, sites: np.ndarray, weights=DEFAULT_WEIGHTS) -> np.ndarray:
    """Weighted Euclidean distance between one lesion descriptor and site descriptors.

    Features that are NaN in the lesion descriptor are ignored; sites with NaN in a used
    feature get an infinite distance.

    Parameters
    ----------
    lesion : ndarray
        (D,).
    sites : ndarray
        (N, D).
    weights : sequence of D floats

    Returns
    -------
    ndarray
        float64 (N,).
    """
    lesion = np.asarray(lesion, np.float64)
    sites = np.asarray(sites, np.float64).reshape(-1, lesion.size)
    used = ~np.isnan(lesion)
    if not used.any():
        return np.zeros(sites.shape[0])
    weight = np.asarray(weights, np.float64)[used]
    difference = sites[:, used] - lesion[used]
    distance = np.sqrt((weight * difference ** 2).sum(axis=1))
    distance[np.isnan(distance)] = np.inf
    return distance


def _clearance(allowed: np.ndarray) -> np.ndarray:
    """Distance (px) from each pixel to the nearest not-allowed pixel or the image border."""
    padded = np.pad(allowed.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance[1:-1, 1:-1]


def choose_sites(body_image: np.ndarray, skin_mask: np.ndarray, lesion_descriptors, radii, *,
                 rng: np.random.Generator, occupied=None, edge_margin: float = 4.0,
                 num_candidates: int = 200, min_gap: float = 4.0, top_k: int = 5,
                 top_fraction: float = 0.1,
                 context_scale: float = 1.5, weights=DEFAULT_WEIGHTS) -> np.ndarray:
    """Choose a site for each lesion where the skin matches the lesion's surrounding skin.

    Lesions are placed from the largest to the smallest.  For each, candidate centres are
    drawn uniformly among the pixels whose distance to non-skin, ``occupied`` and the image
    border is at least ``radius + edge_margin`` and which keep ``min_gap`` from the lesions
    already placed; the site is drawn uniformly among the best candidates, those whose
    descriptors (window half-size ``context_scale * radius + 2``) are closest to the lesion's.

    Parameters
    ----------
    body_image : ndarray
        uint8 (H, W, 3) RGB.
    skin_mask : ndarray
        bool (H, W).
    lesion_descriptors : array_like
        (N, D) from :func:`lesion_descriptor` (NaN = unknown feature).
    radii : array_like
        (N,) lesion radii in pixels (half the longest side of the placed crop).
    rng : numpy.random.Generator
    occupied : ndarray, optional
        bool (H, W) forbidden pixels (existing lesions, ignore regions).
    edge_margin : float
        Extra distance (px) kept from non-skin, ``occupied`` and the image border.
    num_candidates : int
        Candidates scored per lesion.
    min_gap : float
        Minimum gap (px) between the discs of two placed lesions.
    top_k, top_fraction : int, float
        The site is drawn uniformly among the max(top_k, top_fraction * candidates) best
        candidates (top_k=1, top_fraction=0: always the best).  Drawing among a fraction
        spreads lesions over all well-matching skin instead of one best spot.
    context_scale : float
        Site window half-size relative to the lesion radius.
    weights : sequence of D floats
        Feature weights of :func:`descriptor_distance`.

    Returns
    -------
    ndarray
        int64 (N, 2) centres (x, y); rows of -1 for lesions that do not fit.
    """
    skin = np.asarray(skin_mask, bool)
    descriptors = np.asarray(lesion_descriptors, np.float32)
    if descriptors.ndim == 1:
        descriptors = descriptors[None]
    radii = np.atleast_1d(np.asarray(radii, np.float64))
    if radii.shape[0] != descriptors.shape[0]:
        raise ValueError("lesion_descriptors and radii differ in length")
    allowed = skin.copy()
    if occupied is not None:
        allowed &= ~np.asarray(occupied, bool)
    clearance = _clearance(allowed)
    # Pool 2 x 2 cells on large images: exact statistics, windows snapped to 2 px.
    stats = _WindowStats(body_image, skin, cell_px=2 if min(skin.shape) >= 256 else 1)
    sites = np.full((radii.shape[0], 2), -1, np.int64)
    placed_centres, placed_radii = [], []
    for index in np.argsort(-radii, kind="stable"):
        radius = radii[index]
        candidates = np.empty((0, 2), np.int64)
        for exact in (False, True):
            if exact and placed_centres:
                # Few free candidates left between placed lesions: recompute the exact map.
                blocked = np.zeros_like(allowed, dtype=np.uint8)
                for centre, other in zip(placed_centres, placed_radii):
                    cv2.circle(blocked, (int(centre[0]), int(centre[1])),
                               int(np.ceil(other + min_gap)), 1, -1)
                clearance_now = _clearance(allowed & (blocked == 0))
            elif exact:
                break
            else:
                clearance_now = clearance
            free = np.flatnonzero(clearance_now >= radius + edge_margin)
            if free.size == 0:
                break
            draw = rng.choice(free, size=min(free.size, 4 * num_candidates), replace=False)
            candidates = np.stack([draw % skin.shape[1], draw // skin.shape[1]], axis=1)
            if placed_centres and not exact:
                gaps = np.linalg.norm(candidates[:, None, :] - np.array(placed_centres)[None],
                                      axis=2) - np.array(placed_radii)[None] - radius
                candidates = candidates[(gaps >= min_gap).all(axis=1)]
            candidates = candidates[:num_candidates]
            if candidates.shape[0]:
                break
        if candidates.shape[0] == 0:
            logger.debug("lesion %d (radius %.1f px) does not fit", index, radius)
            continue
        site_features = stats.describe(candidates, context_scale * radius + 2)
        distance = descriptor_distance(descriptors[index], site_features, weights)
        keep = max(1, int(top_k), int(top_fraction * candidates.shape[0]))
        best = np.argsort(distance, kind="stable")[:keep]
        chosen = candidates[best[rng.integers(best.size)]]
        sites[index] = chosen
        placed_centres.append(chosen)
        placed_radii.append(radius)
    return sites
