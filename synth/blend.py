"""Poisson image editing (Perez, Gangnet and Blake, SIGGRAPH 2003) for pasting lesions on skin.

The blend solves, for every pixel p of the region Omega (the mask) and each colour channel,
the discrete Poisson equation of Perez et al. eq. 7::

    |N_p| f_p - sum_{q in N_p & Omega} f_q = sum_{q in N_p & dOmega} f*_q + sum_{q in N_p} v_pq

with the guidance field v_pq = g_p - g_q (the source gradient, eq. 11) or, optionally, the
mixed gradients of eq. 12/13, and the Dirichlet boundary f* = the destination.  N_p is the
4-neighbourhood of p restricted to the destination image, so a mask touching the image border
simply has fewer neighbours there (the natural boundary condition of eq. 7).  The sparse
system is factored once per mask with SuperLU and solved for the three channels at once.

The contrast of a lesion against skin lives in the gradient across its border: a blend whose
mask stops at the lesion border keeps only the inner texture and the lesion fades away.
:func:`prepare_lesion_source` therefore fills the pixels outside the lesion with the
destination skin and widens the blend mask a few pixels beyond the lesion, so the border
gradient is part of the guidance field.  :func:`blend_lesion` does the whole paste.

:func:`seamless_clone` wraps ``cv2.seamlessClone`` with the padding and ROI checks it needs;
it is kept as a benchmark reference only.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg

logger = logging.getLogger(__name__)

_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))
#: Largest per-channel skin / lesion-rim ratio applied by the tone match.
MAX_TONE_RATIO = 2.5


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    """Validate an (H, W, 3) image."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must have shape (H, W, 3), got {image.shape}")
    return image


def _resolve_offset(destination_shape, source_shape, offset, center) -> tuple[int, int]:
    """Top-left (x, y) of the source in the destination."""
    if offset is not None and center is not None:
        raise ValueError("give either offset or center, not both")
    if offset is not None:
        return int(round(offset[0])), int(round(offset[1]))
    if center is not None:
        return (int(round(center[0])) - source_shape[1] // 2,
                int(round(center[1])) - source_shape[0] // 2)
    return ((destination_shape[1] - source_shape[1]) // 2,
            (destination_shape[0] - source_shape[0]) // 2)


def _poisson_system(inside: np.ndarray):
    """Sparse matrix of eq. 7 for the bool region `inside` (H, W); neighbours limited to the array."""
    height, width = inside.shape
    count = int(inside.sum())
    index = np.full(inside.shape, -1, dtype=np.int64)
    index[inside] = np.arange(count)
    rows_p, cols_p = np.nonzero(inside)
    diagonal = np.zeros(count, dtype=np.float64)
    off_rows, off_cols = [], []
    for dy, dx in _NEIGHBOURS:
        rows_q, cols_q = rows_p + dy, cols_p + dx
        valid = (rows_q >= 0) & (rows_q < height) & (cols_q >= 0) & (cols_q < width)
        diagonal += valid
        rq, cq = rows_q[valid], cols_q[valid]
        neighbour = index[rq, cq]
        unknown = neighbour >= 0
        off_rows.append(index[rows_p[valid], cols_p[valid]][unknown])
        off_cols.append(neighbour[unknown])
    off_rows = np.concatenate(off_rows)
    off_cols = np.concatenate(off_cols)
    matrix = sparse.coo_matrix(
        (np.concatenate([diagonal, -np.ones(off_rows.size)]),
         (np.concatenate([np.arange(count), off_rows]), np.concatenate([np.arange(count), off_cols]))),
        shape=(count, count)).tocsc()
    return matrix, index, rows_p, cols_p


def poisson_blend(destination: np.ndarray, source: np.ndarray, mask: np.ndarray, *,
                  offset=None, center=None, mixed: bool = False) -> np.ndarray:
    """Blend ``source`` into ``destination`` over ``mask`` by Poisson image editing.

    Parameters
    ----------
    destination : ndarray
        uint8 (H, W, 3) RGB; not modified.
    source : ndarray
        uint8 (h, w, 3) RGB; any size, may hang over the destination border (the part outside
        is dropped).
    mask : ndarray
        bool or uint8 (h, w); nonzero = region Omega to solve for.  It may touch the source
        edges and the destination border.
    offset : (int, int), optional
        (x, y) of the source's top-left pixel in the destination.
    center : (int, int), optional
        (x, y) of the source's centre pixel ``(w // 2, h // 2)`` in the destination.  With
        neither ``offset`` nor ``center`` the source is centred on the destination.
    mixed : bool
        Use mixed gradients (Perez et al. eq. 12/13): at each pixel pair keep the stronger of
        the source and destination gradient (compared over the three channels), which keeps
        destination texture such as hair through a flat source.

    Returns
    -------
    ndarray
        uint8 (H, W, 3): a new image, equal to ``destination`` outside the mask.
    """
    destination = _check_image(destination, "destination")
    source = _check_image(source, "source")
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != source.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} differs from source shape {source.shape[:2]}")
    mask = mask.astype(bool)
    height, width = destination.shape[:2]
    x0, y0 = _resolve_offset(destination.shape, source.shape, offset, center)
    result = destination.copy()

    # Mask in destination coordinates, clipped to the destination.
    rows, cols = np.nonzero(mask)
    rows_d, cols_d = rows + y0, cols + x0
    keep = (rows_d >= 0) & (rows_d < height) & (cols_d >= 0) & (cols_d < width)
    if not keep.any():
        return result
    # Working box: the mask's bounding box grown by one pixel (the Dirichlet ring), clipped.
    top = max(int(rows_d[keep].min()) - 1, 0)
    bottom = min(int(rows_d[keep].max()) + 2, height)
    left = max(int(cols_d[keep].min()) - 1, 0)
    right = min(int(cols_d[keep].max()) + 2, width)
    inside = np.zeros((bottom - top, right - left), dtype=bool)
    inside[rows_d[keep] - top, cols_d[keep] - left] = True

    target = destination[top:bottom, left:right].astype(np.float64)
    # Source over the working box, edge-replicated where the box leaves the source, so the
    # guidance field is zero across the source's own edge.
    src_rows = np.clip(np.arange(top, bottom) - y0, 0, source.shape[0] - 1)
    src_cols = np.clip(np.arange(left, right) - x0, 0, source.shape[1] - 1)
    guide = source[np.ix_(src_rows, src_cols)].astype(np.float64)

    matrix, index, rows_p, cols_p = _poisson_system(inside)
    count = rows_p.size
    rhs = np.zeros((count, 3), dtype=np.float64)
    box_h, box_w = inside.shape
    for dy, dx in _NEIGHBOURS:
        rows_q, cols_q = rows_p + dy, cols_p + dx
        valid = (rows_q >= 0) & (rows_q < box_h) & (cols_q >= 0) & (cols_q < box_w)
        p_idx = np.nonzero(valid)[0]
        rq, cq = rows_q[valid], cols_q[valid]
        rp, cp = rows_p[valid], cols_p[valid]
        # Guidance v_pq (eq. 11: source gradient; eq. 13: the stronger of source/destination).
        field = guide[rp, cp] - guide[rq, cq]
        if mixed:
            field_destination = target[rp, cp] - target[rq, cq]
            stronger = (np.abs(field_destination).sum(axis=1) > np.abs(field).sum(axis=1))
            field[stronger] = field_destination[stronger]
        np.add.at(rhs, p_idx, field)
        # Dirichlet boundary f*_q for neighbours outside Omega.
        boundary = ~inside[rq, cq]
        np.add.at(rhs, p_idx[boundary], target[rq[boundary], cq[boundary]])

    if inside.shape == (height, width) and inside.all():
        # Omega covers the whole destination: no Dirichlet data, the system is singular.
        # A tiny pull towards the destination fixes the free constant.
        epsilon = 1e-6
        matrix = matrix + epsilon * sparse.identity(count, format="csc")
        rhs += epsilon * target[rows_p, cols_p]
    # The matrix is symmetric positive definite (an M-matrix): minimum-degree ordering on
    # A^T + A and no pivoting keep the factor small and fast.
    solver = sparse_linalg.splu(matrix, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                                options={"SymmetricMode": True})
    solution = solver.solve(rhs)
    result[rows_p + top, cols_p + left] = np.clip(np.rint(solution), 0, 255).astype(np.uint8)
    return result


def prepare_lesion_source(lesion_image: np.ndarray, lesion_mask: np.ndarray,
                          destination_patch: np.ndarray, *, margin_px: int = 3,
                          edge_erode_px: int = 1, feather_sigma: float = 1.0,
                          blur_sigma: float = 0.0,
                          tone_match: float = 0.6):
    """Build a blend source and mask that keep the lesion's contrast against the new skin.

    PAD-UFES-20 crops are black outside the lesion mask, and JPEG ringing darkens the pixels
    just inside the mask edge.  The source is the destination skin everywhere outside the
    lesion mask (no pixel of the crop outside its mask reaches the blend, so there is no halo
    or rim), with the lesion composited over it through an alpha feathered inwards from the
    mask edge, whose outermost pixels take the nearest trusted lesion colour; the blend mask is the
    lesion mask dilated by ``margin_px``.  The lesion-to-skin step then lies inside the blend
    mask, so it is part of the guidance field and survives the blend.

    Parameters
    ----------
    lesion_image : ndarray
        uint8 (h, w, 3) RGB lesion crop, already at the target size.
    lesion_mask : ndarray
        bool or uint8 (h, w), nonzero = lesion.
    destination_patch : ndarray
        uint8 (h + 2 * pad, w + 2 * pad, 3) with ``pad = lesion_padding(margin_px)``: the
        destination pixels the padded source will cover.
    margin_px : int
        How far the blend mask reaches beyond the lesion.
    edge_erode_px : int
        Pixels of the lesion edge not trusted (JPEG bleed of the black background).
    feather_sigma : float
        Gaussian sigma (px) of the lesion alpha edge, feathered inwards (nothing of the lesion
        outside its mask).
    blur_sigma : float
        Optical blur (px) of the body photo to give the lesion: a lesion photographed close up
        is far sharper than the same lesion on a body photo.  Lesion colours and alpha are
        blurred alike, so the edge softens on both sides of the mask, by lesion colour only
        (the pixels outside the mask carry the nearest lesion colour, never the crop's own
        surroundings).
    tone_match : float
        In [0, 1]: how far the lesion's colours are carried from its own skin (estimated from
        its rim) to the destination skin, multiplicatively per channel.  0 keeps the crop's
        colours; 1 makes the rim match the new skin.  Partial matching keeps the lesion's
        contrast while removing most of the skin-tone mismatch between patient and body.

    Returns
    -------
    source : ndarray
        uint8 (h + 2 pad, w + 2 pad, 3).
    blend_mask : ndarray
        bool (h + 2 pad, w + 2 pad); at least 2 px from every edge.
    """
    lesion_image = _check_image(lesion_image, "lesion_image")
    lesion_mask = np.asarray(lesion_mask).astype(bool)
    if lesion_mask.shape != lesion_image.shape[:2]:
        raise ValueError("lesion_mask and lesion_image differ in size")
    pad = lesion_padding(margin_px)
    height, width = lesion_mask.shape
    expected = (height + 2 * pad, width + 2 * pad)
    destination_patch = _check_image(destination_patch, "destination_patch")
    if destination_patch.shape[:2] != expected:
        raise ValueError(f"destination_patch must be {expected}, got {destination_patch.shape[:2]}")
    mask = np.pad(lesion_mask, pad).astype(np.uint8)
    image = np.pad(lesion_image, ((pad, pad), (pad, pad), (0, 0)), mode="edge").astype(np.float32)
    trusted = mask
    if edge_erode_px > 0 and mask.sum() > 9 * edge_erode_px ** 2:
        eroded = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=edge_erode_px)
        if eroded.any():
            trusted = eroded
    # Every pixel outside the trusted lesion (the untrusted rim and everything outside the
    # mask: black in PAD-UFES-20 crops, the patient's own skin in ISIC crops) takes the
    # nearest trusted lesion colour, so nothing of it can reach the blend (no dark rim).
    _, (near_rows, near_cols) = _nearest(trusted.astype(bool))
    image = image[near_rows, near_cols]
    if tone_match > 0:
        # Skin pigment acts multiplicatively on everything under it (Beer-Lambert), so the
        # lesion is carried to the new skin tone by the per-channel ratio of the destination
        # skin around the lesion to the lesion's own rim, raised to `tone_match` (0 keeps the
        # lesion's colours, 1 makes its rim match the new skin exactly).
        ring = (cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=margin_px + 1) > 0) & (mask == 0)
        image = image * tone_ratio(destination_patch[ring], image[lesion_rim(trusted)], tone_match)
    alpha = mask.astype(np.float32)
    if feather_sigma > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), feather_sigma)
        # Feathered inwards only: outside the lesion mask the source is the destination.
        alpha = np.where(mask > 0, np.maximum(alpha, 0.5), 0.0)
    if blur_sigma > 0:
        alpha = cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), blur_sigma)
        image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), blur_sigma)
    alpha = alpha[..., None]
    source = alpha * image + (1.0 - alpha) * destination_patch.astype(np.float32)
    source = np.clip(np.rint(source), 0, 255).astype(np.uint8)
    blend_mask = cv2.dilate(mask, cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * margin_px + 1, 2 * margin_px + 1))) > 0 if margin_px > 0 else mask > 0
    return source, blend_mask


def lesion_rim(mask: np.ndarray) -> np.ndarray:
    """bool (H, W): the outer 2 px of a lesion mask (the whole mask when it is thinner)."""
    inner = np.asarray(mask) > 0
    rim = inner & ~(cv2.erode(inner.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2) > 0)
    return rim if rim.any() else inner


def tone_ratio(skin_pixels: np.ndarray, rim_pixels: np.ndarray, strength: float) -> np.ndarray:
    """float32 (3,) per-channel factor carrying a lesion to new skin (the tone match).

    The ratio of the median skin colour to the median colour of the lesion's rim (both + 1),
    clipped to [1 / MAX_TONE_RATIO, MAX_TONE_RATIO] (a rim that is nearly black or white, a
    mask reaching over a crop's background, would otherwise scale the lesion into a bright
    or dark ring), raised to ``strength`` (0: no change, 1: the rim matches the skin).
    """
    skin = np.median(np.asarray(skin_pixels, np.float32).reshape(-1, 3), axis=0) + 1.0
    rim = np.median(np.asarray(rim_pixels, np.float32).reshape(-1, 3), axis=0) + 1.0
    return np.clip(skin / rim, 1.0 / MAX_TONE_RATIO, MAX_TONE_RATIO) ** float(strength)


def _nearest(region: np.ndarray):
    """Distance to and index of the nearest True pixel of `region` (H, W) for every pixel."""
    from scipy import ndimage

    distance, indices = ndimage.distance_transform_edt(~region, return_indices=True)
    return distance, (indices[0], indices[1])


def lesion_padding(margin_px: int) -> int:
    """Padding (px) that :func:`prepare_lesion_source` adds on each side: margin + 2."""
    return int(margin_px) + 2


def blend_lesion(destination: np.ndarray, lesion_image: np.ndarray, lesion_mask: np.ndarray,
                 center, *, margin_px: int = 3, mixed: bool = False, **prepare_options):
    """Paste one lesion crop on a destination image, centred at ``center``.

    Parameters
    ----------
    destination : ndarray
        uint8 (H, W, 3); not modified.
    lesion_image : ndarray
        uint8 (h, w, 3), already scaled to the size it should have in the destination.
    lesion_mask : ndarray
        bool or uint8 (h, w).
    center : (int, int)
        (x, y) of the lesion crop's centre in the destination; the lesion may hang over the
        border.
    margin_px, mixed, prepare_options
        See :func:`prepare_lesion_source` and :func:`poisson_blend`.

    Returns
    -------
    image : ndarray
        uint8 (H, W, 3) blended image.
    lesion_region : ndarray
        bool (H, W): the lesion mask placed in the destination (clipped).
    blend_region : ndarray
        bool (H, W): the pixels that may differ from the destination.
    """
    destination = _check_image(destination, "destination")
    lesion_mask = np.asarray(lesion_mask).astype(bool)
    pad = lesion_padding(margin_px)
    height, width = lesion_mask.shape
    x0 = int(round(center[0])) - width // 2 - pad
    y0 = int(round(center[1])) - height // 2 - pad
    size_h, size_w = height + 2 * pad, width + 2 * pad
    # Destination patch under the padded source; outside the image use reflected skin (those
    # pixels are dropped by poisson_blend anyway).
    rows = _reflect(np.arange(y0, y0 + size_h), destination.shape[0])
    cols = _reflect(np.arange(x0, x0 + size_w), destination.shape[1])
    patch = destination[np.ix_(rows, cols)]
    source, blend_mask = prepare_lesion_source(lesion_image, lesion_mask, patch,
                                               margin_px=margin_px, **prepare_options)
    image = poisson_blend(destination, source, blend_mask, offset=(x0, y0), mixed=mixed)
    lesion_region = _place(np.pad(lesion_mask, pad), destination.shape[:2], x0, y0)
    blend_region = _place(blend_mask, destination.shape[:2], x0, y0)
    return image, lesion_region, blend_region


def _reflect(coordinates: np.ndarray, size: int) -> np.ndarray:
    """Reflect integer coordinates into [0, size)."""
    if size == 1:
        return np.zeros_like(coordinates)
    period = 2 * size - 2
    coordinates = np.mod(coordinates, period)
    return np.where(coordinates >= size, period - coordinates, coordinates)


def _place(mask: np.ndarray, shape, x0: int, y0: int) -> np.ndarray:
    """Paste bool `mask` with top-left (x0, y0) into a False canvas of `shape`, clipped."""
    canvas = np.zeros(shape, dtype=bool)
    top, left = max(y0, 0), max(x0, 0)
    bottom, right = min(y0 + mask.shape[0], shape[0]), min(x0 + mask.shape[1], shape[1])
    if bottom > top and right > left:
        canvas[top:bottom, left:right] = mask[top - y0:bottom - y0, left - x0:right - x0]
    return canvas


def seamless_clone(destination: np.ndarray, source: np.ndarray, mask: np.ndarray, center, *,
                   flags: int = cv2.NORMAL_CLONE, border_px: int = 3) -> np.ndarray:
    """``cv2.seamlessClone`` with the padding and ROI checks it needs (benchmark reference).

    The source and mask are padded by ``border_px`` so the mask stays away from the patch
    edges (OpenCV forces a 1-px zero border and aborts on 1-2 row masks), the mask is clipped
    to the destination, and the ROI is kept inside the destination (OpenCV asserts
    otherwise).  NORMAL_CLONE shifts the source colour; prefer :func:`poisson_blend`.

    Parameters
    ----------
    destination : ndarray
        uint8 (H, W, 3) RGB.
    source : ndarray
        uint8 (h, w, 3) RGB.
    mask : ndarray
        bool or uint8 (h, w).
    center : (int, int)
        (x, y) of the source's centre pixel ``(w // 2, h // 2)`` in the destination.
    flags : int
        ``cv2.NORMAL_CLONE`` or ``cv2.MIXED_CLONE``.
    border_px : int
        Zero padding (>= 2) around the mask.

    Returns
    -------
    ndarray
        uint8 (H, W, 3).
    """
    destination = _check_image(destination, "destination")
    source = _check_image(source, "source")
    mask = np.asarray(mask).astype(bool)
    height, width = destination.shape[:2]
    border_px = max(int(border_px), 2)
    x0 = int(round(center[0])) - source.shape[1] // 2
    y0 = int(round(center[1])) - source.shape[0] // 2
    # Clip the mask to the destination, keeping border_px from the image border (the ROI
    # plus its padding must fit).
    placed = _place(mask, (height, width), x0, y0)
    # OpenCV aborts on masks whose bounding box is 1-2 pixels thick: thicken them to 3.
    for _ in range(2):
        rows, cols = np.nonzero(placed)
        if rows.size and rows.max() - rows.min() < 2:
            placed = cv2.dilate(placed.astype(np.uint8), np.ones((3, 1), np.uint8)) > 0
        if rows.size and cols.max() - cols.min() < 2:
            placed = cv2.dilate(placed.astype(np.uint8), np.ones((1, 3), np.uint8)) > 0
    placed[:border_px] = placed[-border_px:] = False
    placed[:, :border_px] = placed[:, -border_px:] = False
    rows, cols = np.nonzero(placed)
    if rows.size == 0 or rows.max() - rows.min() < 2 or cols.max() - cols.min() < 2:
        logger.warning("seamless_clone: mask too thin or outside the destination; unchanged")
        return destination.copy()
    top, bottom = rows.min() - border_px, rows.max() + border_px + 1
    left, right = cols.min() - border_px, cols.max() + border_px + 1
    src_rows = np.clip(np.arange(top, bottom) - y0, 0, source.shape[0] - 1)
    src_cols = np.clip(np.arange(left, right) - x0, 0, source.shape[1] - 1)
    patch = np.ascontiguousarray(source[np.ix_(src_rows, src_cols)])
    patch_mask = (placed[top:bottom, left:right].astype(np.uint8) * 255)
    # OpenCV puts the top-left of the mask's bounding box at center - (box_w // 2, box_h // 2).
    roi_center = (int(cols.min() + (cols.max() - cols.min() + 1) // 2),
                  int(rows.min() + (rows.max() - rows.min() + 1) // 2))
    blended = cv2.seamlessClone(cv2.cvtColor(patch, cv2.COLOR_RGB2BGR),
                                cv2.cvtColor(destination, cv2.COLOR_RGB2BGR),
                                patch_mask, roi_center, flags)
    return cv2.cvtColor(blended, cv2.COLOR_BGR2RGB)
