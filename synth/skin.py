"""Skin masks and existing lesion spots on body photos.

Li et al. (2016) blend lesions only onto skin, so every body photo needs a skin mask.
Body photos from total-body imaging carry black padding, flat colour fills, clothing, walls and
furniture; a fixed colour rule alone mistakes warm walls and wood for skin, so the mask here is
built in three steps:

1. a loose chroma rule in YCrCb (the classical skin cluster, Chai & Ngan 1999) that also drops
   near-black padding and texture-free fills (JPEG-flat regions with no skin grain);
2. a per-image refinement: two Gaussian colour models in CIE Lab, one fitted on the confident
   skin seeds and one on everything else, and a pixel is skin when its skin log-likelihood wins
   (a two-class maximum-likelihood classifier, Jones & Rehg 1999, adapted to the image);
3. morphology: small components are dropped, holes (moles, nipples, shadows) are filled, and the
   border is smoothed by an opening and a closing.

Real moles and freckles on the body photos are not labelled; :func:`find_lesion_spots` finds
dark, blob-like spots on skin (Laplacian-of-Gaussian on a darkness channel) so that the dataset
writer can mark them 255 (ignore) instead of teaching the detector that they are background.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

__all__ = ["segment_skin", "find_lesion_spots", "ignore_mask_from_spots", "darkness_channel",
           "segment_lesion_in_box"]


# --------------------------------------------------------------------------- skin mask


def _local_std(gray: np.ndarray, size: int) -> np.ndarray:
    """Standard deviation of ``gray`` over a size x size box."""
    gray = gray.astype(np.float32)
    mean = cv2.blur(gray, (size, size))
    mean_sq = cv2.blur(gray * gray, (size, size))
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))


def _gaussian_log_likelihood(samples: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Log-likelihood of ``data`` (N, D) under a Gaussian fitted to ``samples`` (M, D)."""
    mean = samples.mean(axis=0)
    cov = np.cov(samples, rowvar=False) + np.eye(samples.shape[1]) * 1.0
    inv = np.linalg.inv(cov)
    diff = data - mean
    mahalanobis = np.einsum("ij,jk,ik->i", diff, inv, diff)
    return -0.5 * mahalanobis - 0.5 * np.log(np.linalg.det(cov))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    return ndimage.binary_fill_holes(mask)


def _keep_large_components(mask: np.ndarray, min_area: int) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[labels]


def segment_skin(
    image: np.ndarray,
    *,
    analysis_size: int = 512,
    min_brightness: int = 35,
    cr_range: tuple[int, int] = (133, 180),
    cb_range: tuple[int, int] = (77, 130),
    min_texture: float = 0.6,
    min_component: float = 0.01,
    smoothing: int = 7,
    min_fraction: float = 0.02,
) -> np.ndarray:
    """Segment the skin of a body photo.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    analysis_size : int
        The longest side is reduced to this many pixels for the colour model and morphology;
        the mask is resized back to (H, W) at the end.
    min_brightness : int
        Pixels with luma (Y) below this are padding or deep shadow, never skin.
    cr_range, cb_range : (int, int)
        Loose YCrCb chroma box of skin used to seed the per-image colour model.
    min_texture : float
        Minimum local grey-level standard deviation (7x7, at analysis size) of skin; flat,
        texture-free fills used as padding fall below it.
    min_component : float
        Connected skin regions smaller than this fraction of the image are dropped.
    smoothing : int
        Diameter in pixels (at analysis size) of the opening / closing element.
    min_fraction : float
        If less than this fraction of the image is skin, ``ValueError('no skin found')``.

    Returns
    -------
    ndarray
        bool (H, W), True on skin.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    scale = min(1.0, analysis_size / max(height, width))
    small = image if scale == 1.0 else cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )
    blurred = cv2.GaussianBlur(small, (3, 3), 0)
    ycrcb = cv2.cvtColor(blurred, cv2.COLOR_RGB2YCrCb)
    luma, cr, cb = ycrcb[..., 0], ycrcb[..., 1], ycrcb[..., 2]

    # Step 1: rule-based candidates; padding is dark or texture-free.
    texture = _local_std(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), 7)
    valid = (luma >= min_brightness) & (texture >= min_texture)
    valid = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    rule = valid & (cr >= cr_range[0]) & (cr <= cr_range[1]) & (cb >= cb_range[0]) & (cb <= cb_range[1])
    # Skin is redder than it is blue: Cr - Cb separates it from beige walls and grey cloth.
    rule &= (cr.astype(np.int16) - cb.astype(np.int16)) >= 15
    total = rule.size
    if rule.sum() < min_fraction * total:
        raise ValueError("no skin found")

    # Step 2: per-image two-class Gaussian model in Lab (Jones & Rehg 1999 style ML rule).
    lab = cv2.cvtColor(blurred, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    seeds = cv2.erode(rule.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if seeds.sum() < 50:
        seeds = rule
    skin_samples = lab[seeds.ravel()]
    # The chroma (a, b) carries the colour model; luma varies with shading, so it gets a
    # down-weighted axis to keep shadows on skin.
    weights = np.array([0.35, 1.0, 1.0])
    features = lab * weights
    skin_ll = _gaussian_log_likelihood(skin_samples * weights, features)
    other = valid.ravel() & ~cv2.dilate(rule.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool).ravel()
    if other.sum() >= 200:
        other_ll = _gaussian_log_likelihood(lab[other] * weights, features)
        refined = skin_ll > other_ll
    else:
        refined = np.ones(total, bool)
    # Independent of the background model: far from the skin cluster is not skin.
    refined &= skin_ll > np.percentile(skin_ll[seeds.ravel()], 1) - 6.0
    mask = refined.reshape(rule.shape) & valid

    # Step 3: morphology.
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (smoothing, smoothing))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    mask = _keep_large_components(mask, int(min_component * total))
    mask = _fill_holes(mask)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
    mask &= valid | _fill_holes(mask & valid)
    if mask.sum() < min_fraction * total:
        raise ValueError("no skin found")
    if scale != 1.0:
        mask = cv2.resize(mask.astype(np.uint8) * 255, (width, height), interpolation=cv2.INTER_LINEAR) > 127
    return mask


# --------------------------------------------------------------------------- lesion spots


def darkness_channel(image: np.ndarray) -> np.ndarray:
    """Lesion contrast channel: float32 (H, W), large where skin is dark or reddish-brown.

    Moles are darker than skin (low Lab L) and angiomas are redder (high Lab a); the channel is
    ``(100 - L) + 0.5 * a`` in Lab units.
    """
    lab = cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    lightness = lab[..., 0] * (100.0 / 255.0)
    redness = lab[..., 1] - 128.0
    return (100.0 - lightness) + 0.5 * redness


def find_lesion_spots(
    image: np.ndarray,
    skin_mask: np.ndarray,
    *,
    min_radius: float = 3.0,
    max_radius: float = 35.0,
    num_sigma: int = 8,
    contrast: float = 6.0,
    min_roundness: float = 0.4,
    background_size: int = 61,
    analysis_scale: float = 0.5,
) -> np.ndarray:
    """Find existing dark or red lesion-like spots (moles, freckles, angiomas) on skin.

    Laplacian-of-Gaussian blob detection (``skimage.feature.blob_log``) on the darkness channel
    (:func:`darkness_channel`) minus its local median, so shading and skin tone do not count.
    Hair is the main source of false spots: a small opening removes strands thinner than a
    lesion, and blobs whose Hessian eigenvalue ratio (smaller over larger magnitude) at the
    detected scale is below ``min_roundness`` are line-like (strands, creases) and dropped.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    skin_mask : ndarray
        bool (H, W); spots are reported only with their centre on skin.
    min_radius, max_radius : float
        Radius range of spots, in pixels of the full image.
    num_sigma : int
        Number of LoG scales between them.
    contrast : float
        Minimum local contrast of a spot in darkness-channel (Lab) units.
    min_roundness : float
        Minimum Hessian eigenvalue ratio in [0, 1]; 1 is a round blob, 0 a straight line.
    background_size : int
        Median window (full-resolution pixels) that estimates the surrounding skin.
    analysis_scale : float
        Detection runs on the image resized by this factor (spots of 5+ px survive 0.5).

    Returns
    -------
    ndarray
        float64 (N, 3): x, y (column, row centre) and radius, in full-resolution pixels.
    """
    from skimage.feature import blob_log, hessian_matrix, hessian_matrix_eigvals

    image = np.asarray(image)
    skin_mask = np.asarray(skin_mask, bool)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    if skin_mask.shape != image.shape[:2]:
        raise ValueError(f"skin mask {skin_mask.shape} does not match image {image.shape[:2]}")
    empty = np.zeros((0, 3))
    height, width = image.shape[:2]
    scale = float(analysis_scale)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale != 1.0 else image
    skin_small = cv2.resize(skin_mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    if not skin_small.any():
        return empty

    dark = darkness_channel(small)
    # Off-skin pixels get the median skin value so padding edges do not form blobs.
    fill = float(np.median(dark[skin_small]))
    dark = np.where(skin_small, dark, fill).astype(np.float32)
    window = min(255, max(3, int(round(background_size * scale)) | 1))
    # A median is robust to the spots themselves; cv2.medianBlur needs uint8 beyond 5x5.
    offset = fill - 127.0
    as_uint8 = np.clip(dark - offset, 0, 255).astype(np.uint8)
    background = cv2.medianBlur(as_uint8, window).astype(np.float32) + offset
    excess = np.clip(dark - background, 0, None)
    # Hair strands are 1-2 px wide at half resolution; lesions of min_radius are wider.
    width_px = max(1, int(round(min_radius * scale)))
    if width_px >= 2:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width_px + 1, width_px + 1))
        excess = cv2.morphologyEx(excess, cv2.MORPH_OPEN, kernel)

    sigma_min = max(0.7, min_radius * scale / np.sqrt(2))
    sigma_max = max(sigma_min * 1.01, max_radius * scale / np.sqrt(2))
    # For a disk of contrast c and radius sqrt(2) sigma the scale-normalised LoG peaks near
    # 0.5 c, so the threshold is half the required contrast.
    blobs = blob_log(
        excess, min_sigma=sigma_min, max_sigma=sigma_max, num_sigma=num_sigma,
        threshold=0.5 * contrast, overlap=0.5, exclude_border=False,
    )
    if blobs.size == 0:
        return empty
    rows, cols = blobs[:, 0].astype(int), blobs[:, 1].astype(int)
    keep = skin_small[rows, cols]
    for sigma in np.unique(blobs[:, 2]):
        at_scale = np.flatnonzero(keep & (blobs[:, 2] == sigma))
        if at_scale.size == 0:
            continue
        hessian = hessian_matrix(excess, sigma=float(sigma), order="rc", use_gaussian_derivatives=False)
        eigen = hessian_matrix_eigvals(hessian)[:, rows[at_scale], cols[at_scale]]
        magnitude = np.sort(np.abs(eigen), axis=0)
        roundness = magnitude[0] / np.maximum(magnitude[1], 1e-9)
        # A bright blob in the excess channel has both curvatures negative.
        keep[at_scale] = (eigen.max(axis=0) < 0) & (roundness >= min_roundness)
    blobs = blobs[keep]
    spots = np.stack([blobs[:, 1] / scale, blobs[:, 0] / scale, blobs[:, 2] * np.sqrt(2) / scale], axis=1)
    return spots.astype(np.float64)


def ignore_mask_from_spots(shape, spots: np.ndarray, *, margin: float = 3.0, scale: float = 1.5) -> np.ndarray:
    """Disks around spots, to be marked 255 (ignore) in label maps.

    Parameters
    ----------
    shape : tuple
        (H, W) or (H, W, C) of the image.
    spots : ndarray
        (N, 3) x, y, radius in pixels.
    margin : float
        Pixels added to each scaled radius.
    scale : float
        Factor on each radius (LoG radii under-estimate the visible extent of faint halos).

    Returns
    -------
    ndarray
        bool (H, W).
    """
    height, width = shape[:2]
    mask = np.zeros((height, width), np.uint8)
    for x, y, radius in np.asarray(spots, float).reshape(-1, 3):
        cv2.circle(mask, (int(round(x)), int(round(y))), int(np.ceil(radius * scale + margin)), 1, -1)
    return mask.astype(bool)


def segment_lesion_in_box(image: np.ndarray, box, *, search_scale: float = 1.4,
                          context_scale: float = 2.5, min_contrast: float = 3.0,
                          fill_range=(0.2, 1.6)):
    """Segment a real lesion whose box (or circle) on a body photo is known.

    The darkness channel (:func:`darkness_channel`), blurred at a sixth of the radius, is cut
    at half way between the surrounding skin (its median in a ring of 1.5-2.5 radii about the
    box centre) and the lesion's peak (its maximum in the inner 0.6 of the ellipse inscribed
    in the box): the lesion's half-maximum contour.  The component nearest the centre inside
    the ellipse grown by ``search_scale`` is kept and its holes filled.  When the lesion is
    too faint (peak less than ``min_contrast`` above the skin) or the region's area is outside
    ``fill_range`` times the ellipse's area, the ellipse itself (a disc for a circle) is used.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3), the whole body photo.
    box : (float, float, float, float)
        [x, y, w, h] in pixels; the lesion is about the ellipse inscribed in it.
    search_scale, context_scale : float
        Search ellipse and context window (for the skin ring), relative to the box's radii.
    min_contrast : float
        Darkness-channel units (Lab) between lesion peak and skin below which the disc is used.
    fill_range : (float, float)
        Accepted area of the segmented region relative to the ellipse's area.

    Returns
    -------
    mask : ndarray
        bool (h, w): the lesion inside the window (empty when the box is off the image).
    offset : (int, int)
        (x, y) of the window's top-left pixel in the photo.
    mask_source : str
        'segmented' or 'disc'.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    x, y, w, h = (float(v) for v in box)
    cx, cy = x + w / 2.0, y + h / 2.0
    rx, ry = max(w / 2.0, 1.0), max(h / 2.0, 1.0)
    reach = context_scale * max(rx, ry) + 2
    x0, y0 = max(0, int(np.floor(cx - reach))), max(0, int(np.floor(cy - reach)))
    x1, y1 = min(width, int(np.ceil(cx + reach)) + 1), min(height, int(np.ceil(cy + reach)) + 1)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), bool), (0, 0), "disc"
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    # Pixel centres at integer coordinates: the box [x, x + w) has its centre at x + w/2 - 0.5.
    radius = np.hypot((xx - cx + 0.5) / rx, (yy - cy + 0.5) / ry)
    disc = radius <= 1.0
    if not disc.any():
        disc = radius <= radius.min() + 1e-9
    channel = darkness_channel(image[y0:y1, x0:x1])
    channel = cv2.GaussianBlur(channel, (0, 0), max(0.7, min(rx, ry) / 6.0))
    ring = (radius >= 1.5) & (radius <= context_scale)
    core = radius <= 0.6
    if ring.sum() < 8 or not core.any():
        return disc, (x0, y0), "disc"
    skin_level = float(np.median(channel[ring]))
    peak = float(channel[core].max())
    if peak - skin_level < min_contrast:
        return disc, (x0, y0), "disc"
    candidate = (channel > 0.5 * (skin_level + peak)) & (radius <= search_scale)
    count, labels = cv2.connectedComponents(candidate.astype(np.uint8), connectivity=8)
    if count <= 1:
        return disc, (x0, y0), "disc"
    # The component holding the core's peak.
    peak_at = np.unravel_index(np.argmax(np.where(core, channel, -np.inf)), channel.shape)
    region = ndimage.binary_fill_holes(labels == labels[peak_at])
    fill = region.sum() / max(disc.sum(), 1)
    if not fill_range[0] <= fill <= fill_range[1]:
        return disc, (x0, y0), "disc"
    return region, (x0, y0), "segmented"
