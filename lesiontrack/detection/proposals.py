"""From the detector's class heatmap to individual lesions (Li, Esteva et al. 2016, sec. 4).

The FCN gives per-pixel probabilities of background, benign and malignant. A lesion is a
connected region where P(lesion) = P(benign) + P(malignant) passes a threshold; lesions that
touch are split by a watershed on the heatmap, seeded at its regional maxima that stand at
least ``split_depth`` above the saddle between them (h-maxima). Each lesion then carries its
box, centroid, area, a detection score and a malignancy score, the share of its probability
mass that is malignant.

numpy / scikit-image only (no TensorFlow), so proposals can be computed from saved heatmaps.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import measure, morphology, segmentation


def lesion_probability(probabilities):
    """P(lesion) = P(benign) + P(malignant): float32 (H, W) from (H, W, 3)."""
    probabilities = np.asarray(probabilities, np.float32)
    if probabilities.ndim != 3 or probabilities.shape[2] != 3:
        raise ValueError(f"probabilities must be (H, W, 3), got {probabilities.shape}")
    return probabilities[..., 1] + probabilities[..., 2]


def segment_lesions(probabilities, *, threshold=0.5, min_area=16, opening_radius=1,
                    smoothing=1.0, split_depth=0.1):
    """Instance map of the lesions in a class heatmap.

    Parameters
    ----------
    probabilities : ndarray
        float32 (H, W, 3) softmax output (background, benign, malignant).
    threshold : float
        A pixel is lesion when P(lesion) >= threshold.
    min_area : int
        Lesions (and watershed pieces) smaller than this many pixels are dropped.
    opening_radius : int
        Radius of the binary opening that removes specks and thin bridges; 0 disables.
    smoothing : float
        Gaussian sigma (px) applied to P(lesion) before looking for maxima; 0 disables.
    split_depth : float
        Two maxima of P(lesion) become two lesions when the heatmap dips by at least this
        much between them; ``None`` disables splitting.

    Returns
    -------
    ndarray
        uint16 (H, W), 0 background, 1..n lesions numbered in raster order of their first
        pixel.
    """
    p_lesion = lesion_probability(probabilities)
    mask = p_lesion >= threshold
    if opening_radius:
        # A square footprint keeps box-shaped regions exact; specks thinner than it go.
        side = 2 * opening_radius + 1
        mask = ndimage.binary_opening(mask, structure=np.ones((side, side), bool))
    mask = ndimage.binary_fill_holes(mask)
    mask = morphology.remove_small_objects(mask, max_size=min_area - 1) if min_area > 1 else mask
    components, count = ndimage.label(mask)
    if count == 0:
        return np.zeros(mask.shape, np.uint16)
    if split_depth is None:
        instances = components
    else:
        elevation = ndimage.gaussian_filter(p_lesion, smoothing) if smoothing else p_lesion
        instances = np.zeros(mask.shape, np.int64)
        next_id = 1
        # One component at a time: cost scales with the lesions, not the photo.
        for index, window in enumerate(ndimage.find_objects(components), start=1):
            inside = components[window] == index
            pieces = _split(np.where(inside, elevation[window], 0.0), inside, split_depth)
            instances[window][pieces > 0] = pieces[pieces > 0] + next_id - 1
            next_id += int(pieces.max())
        if min_area > 1:
            areas = np.bincount(instances.ravel())
            instances[areas[instances] < min_area] = 0
    # Renumber 1..n in raster order.
    return _renumber(instances)


def _split(elevation, inside, split_depth):
    """Watershed of one component from its h-maxima; labels 1..k (k >= 1) inside."""
    # Regional maxima deeper than split_depth seed one lesion each (watershed by flooding
    # from markers, Beucher & Meyer 1993); a component without such a maximum stays whole.
    peaks = morphology.h_maxima(elevation.astype(np.float64), split_depth).astype(bool) & inside
    markers, count = ndimage.label(peaks)
    if count <= 1:
        return inside.astype(np.int64)
    return segmentation.watershed(-elevation, markers, mask=inside)


def _renumber(instances):
    """Relabel a label image to 1..n in order of first appearance in raster order."""
    flat = instances.ravel()
    ids, first = np.unique(flat, return_index=True)
    keep = ids != 0
    order = ids[keep][np.argsort(first[keep])]
    lookup = np.zeros(int(flat.max()) + 1, np.uint16)
    lookup[order] = np.arange(1, order.size + 1, dtype=np.uint16)
    return lookup[instances]


def describe_lesions(probabilities, instances, *, score="mean"):
    """One record per lesion of an instance map.

    Parameters
    ----------
    probabilities : ndarray
        float32 (H, W, 3).
    instances : ndarray
        integer (H, W), 0 none, 1..n.
    score : {"mean", "max"}
        How P(lesion) over the lesion's pixels becomes its detection score.

    Returns
    -------
    list of dict
        ``id`` (instance id), ``bbox`` [x, y, w, h] (px, COCO), ``centroid`` [x, y] (px),
        ``area_px``, ``score``, ``malignancy`` = mean P(malignant) / mean P(lesion) over the
        lesion, ``label`` "malignant" when malignancy >= 0.5 else "benign".
    """
    if score not in ("mean", "max"):
        raise ValueError(f"score must be 'mean' or 'max', got {score!r}")
    probabilities = np.asarray(probabilities, np.float32)
    p_lesion = lesion_probability(probabilities)
    lesions = []
    for region in measure.regionprops(np.asarray(instances, np.int32)):
        rows, cols = region.coords[:, 0], region.coords[:, 1]
        p = p_lesion[rows, cols]
        malignancy = float(probabilities[rows, cols, 2].sum() / max(p.sum(), 1e-12))
        min_row, min_col, max_row, max_col = region.bbox
        cy, cx = region.centroid
        lesions.append({
            "id": int(region.label),
            "bbox": [int(min_col), int(min_row), int(max_col - min_col), int(max_row - min_row)],
            "centroid": [round(float(cx), 2), round(float(cy), 2)],
            "area_px": int(region.area),
            "score": round(float(p.mean() if score == "mean" else p.max()), 4),
            "malignancy": round(malignancy, 4),
            "label": "malignant" if malignancy >= 0.5 else "benign",
        })
    return lesions


def heatmap_to_lesions(probabilities, *, threshold=0.5, min_area=16, opening_radius=1,
                       smoothing=1.0, split_depth=0.1, score="mean", return_instances=False):
    """Lesions found in a class heatmap (:func:`segment_lesions` + :func:`describe_lesions`).

    Parameters
    ----------
    probabilities : ndarray
        float32 (H, W, 3) softmax output (background, benign, malignant).
    threshold, min_area, opening_radius, smoothing, split_depth
        See :func:`segment_lesions`.
    score : {"mean", "max"}
        See :func:`describe_lesions`.
    return_instances : bool
        Also return the uint16 (H, W) instance map whose ids match the records' ``id``.

    Returns
    -------
    list of dict, or (list of dict, ndarray)
    """
    instances = segment_lesions(probabilities, threshold=threshold, min_area=min_area,
                                opening_radius=opening_radius, smoothing=smoothing,
                                split_depth=split_depth)
    lesions = describe_lesions(probabilities, instances, score=score)
    return (lesions, instances) if return_instances else lesions
