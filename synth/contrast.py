"""Visible contrast of a lesion against the skin around it.

A blended lesion is only a lesion for training when a person can see it.  The measure is the
CIEDE2000 colour difference (Sharma, Wu and Dalal 2005, ``skimage.color.deltaE_ciede2000``)
between the mean CIELAB colour inside the lesion and the mean colour of a ring of skin around
it.  A Delta E00 of about 1 is the just-noticeable difference for large uniform patches; small
lesions on textured skin need more.

:data:`VISIBLE_DELTA_E` is chosen from the same measure on the clearly visible real moles
annotated ``lesion`` in the iToBoS ``lesions.csv`` (segmented inside their circles by
:func:`synth.skin.segment_lesion_in_box`; ring on skin, other lesions left out): 40 moles,
Delta E00 from 3.8 to 24.6, 5th percentile 5.4, median 10.6 (``python experiments/realism.py
--contrast-only``).  The threshold is that 5th percentile rounded down, 5.0: a blend fainter
than 95 % of the clear real moles is not taught as a lesion.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.color import deltaE_ciede2000, rgb2lab

__all__ = ["lesion_contrast", "contrasts_of_instances", "VISIBLE_DELTA_E"]

#: Delta E00 below which a blended lesion counts as invisible (see the module docstring).
VISIBLE_DELTA_E = 5.0


def _ring(mask: np.ndarray, gap_px: float, width_px: float) -> np.ndarray:
    """Pixels between ``gap_px`` and ``gap_px + width_px`` outside ``mask``."""
    distance = ndimage.distance_transform_edt(~mask)
    return (distance > gap_px) & (distance <= gap_px + width_px)


def ring_reach(area_px: float, *, gap_px: float = 1.0, width_px: float | None = None) -> int:
    """How far (px) the skin ring of :func:`lesion_contrast` reaches beyond a lesion's mask.

    A window of the lesion's box grown by this margin holds everything
    :func:`lesion_contrast` reads, so callers may crop to it first (a mask of one lesion on a
    whole photo costs more than the measure itself).
    """
    width = max(3.0, float(np.sqrt(area_px / np.pi))) if width_px is None else float(width_px)
    return int(np.ceil(gap_px + width)) + 1


def lesion_contrast(image: np.ndarray, mask: np.ndarray, *, exclude=None, gap_px: float = 1.0,
                    width_px: float | None = None) -> float:
    """CIEDE2000 between a lesion's mean Lab colour and that of a ring of skin around it.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    mask : ndarray
        bool (H, W), the lesion.
    exclude : ndarray, optional
        bool (H, W): pixels never used as skin (other lesions, non-skin).
    gap_px : float
        Pixels just outside the mask left out (the blurred lesion edge).
    width_px : float, optional
        Ring width; default max(3, the lesion's equivalent radius).

    Returns
    -------
    float
        Delta E00 (>= 0); NaN when the mask or the ring is empty.
    """
    image = np.asarray(image)
    mask = np.asarray(mask, bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {image.shape[:2]}")
    if not mask.any():
        return float("nan")
    area = float(mask.sum())
    width = max(3.0, float(np.sqrt(area / np.pi))) if width_px is None else float(width_px)
    reach = ring_reach(area, gap_px=gap_px, width_px=width)
    rows, cols = np.nonzero(mask)
    top, left = max(rows.min() - reach, 0), max(cols.min() - reach, 0)
    bottom, right = min(rows.max() + reach + 1, mask.shape[0]), min(cols.max() + reach + 1, mask.shape[1])
    window = (slice(top, bottom), slice(left, right))
    inside = mask[window]
    ring = _ring(inside, gap_px, width)
    if exclude is not None:
        ring &= ~np.asarray(exclude, bool)[window]
    if not ring.any():
        return float("nan")
    lab = rgb2lab(image[window])
    return float(deltaE_ciede2000(lab[inside].mean(axis=0), lab[ring].mean(axis=0)))


def contrasts_of_instances(image: np.ndarray, instances: np.ndarray, *, exclude=None) -> dict:
    """:func:`lesion_contrast` of every instance id > 0 of an instance map.

    Each lesion's ring leaves out every instance (and ``exclude``).

    Returns
    -------
    dict
        instance id (int) -> Delta E00 (float, NaN when no ring).
    """
    instances = np.asarray(instances)
    others = instances > 0
    if exclude is not None:
        others = others | np.asarray(exclude, bool)
    return {int(i): lesion_contrast(image, instances == i, exclude=others)
            for i in np.unique(instances) if i > 0}
