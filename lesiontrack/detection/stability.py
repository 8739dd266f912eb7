"""Stability of detection under what changes between two visits' photos of the same skin.

A lesion the detector finds on one visit and drops on the next cannot be tracked, and no two
visits share exposure, compression or distance. :func:`detection_stability` runs a detector on
a photo and on perturbed copies of it (:func:`perturb`) and reports, per perturbation, the
share of the original's lesions found again and the relative change of the count.

Perturbations (names as in :data:`DEFAULT_PERTURBATIONS`):

* ``exposureF``: linear light multiplied by F (sRGB decoded, scaled, clipped to [0, 1],
  encoded again: a camera exposure change; F = 0.85 darkens mid-tones by about 7 %);
* ``gainF``: pixel values multiplied by F and clipped (a cruder brightness change);
* ``jpegQ``: JPEG re-encoding at quality Q (OpenCV);
* ``scaleF``: the photo resized by F (:func:`lesiontrack.imaging.resize_image`); detections
  are mapped back to the original pixels in the pixel-centre convention of ``cv2.resize``,
  ``x = (x' + 0.5) / F - 0.5``.

Found again (:func:`refound`): a detection of the perturbed photo can stand for a lesion of the
original when its centroid, mapped back, lies inside the original lesion's box grown by
``margin`` pixels on every side, or within ``max(radius, min_radius)`` pixels of the original
centroid (``radius`` of the disc of the lesion's area). Each detection stands for at most one
lesion and each lesion is found by at most one detection: the pairs are assigned one-to-one,
nearest centroids first overall (Hungarian assignment on the centroid distance,
``scipy.optimize.linear_sum_assignment``).
"""
from __future__ import annotations

import re

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from lesiontrack.imaging import check_image, resize_image

DEFAULT_PERTURBATIONS = ("exposure0.85", "exposure1.15", "jpeg80", "scale0.85", "scale1.15")
MARGIN = 3.0
MIN_RADIUS = 4.0
# Targets of detection v2: share found again and relative change of the count.
REFOUND_TARGET = 0.9
COUNT_CHANGE_TARGET = 0.15

_PATTERN = re.compile(r"^(exposure|gain|jpeg|scale)(\d+(?:\.\d*)?)$")


def parse_perturbation(name) -> tuple[str, float]:
    """("exposure", 0.85) from "exposure0.85"; ValueError naming the accepted forms."""
    match = _PATTERN.match(str(name).strip())
    value = float(match.group(2)) if match else 0.0
    if not match or value <= 0 or (match.group(1) == "jpeg" and not 1 <= value <= 100):
        raise ValueError(f"{name!r}: expected exposureF, gainF, jpegQ (1-100) or scaleF, "
                         "e.g. exposure0.85, jpeg80, scale1.15")
    return match.group(1), value


def _srgb_to_linear(rgb):
    """IEC 61966-2-1 decoding of [0, 1] sRGB values."""
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(linear):
    """IEC 61966-2-1 encoding to [0, 1] sRGB values."""
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)


def perturb(image, name) -> tuple[np.ndarray, tuple[float, float]]:
    """A perturbed copy of a photo and its scale relative to the original.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    name : str
        ``exposureF``, ``gainF``, ``jpegQ`` or ``scaleF`` (module docstring).

    Returns
    -------
    perturbed : ndarray
        uint8 RGB (H', W', 3); (H, W) unless scaled.
    scale : (float, float)
        (W' / W, H' / H).
    """
    image = check_image(image, "image", min_side=1)
    kind, value = parse_perturbation(name)
    height, width = image.shape[:2]
    if kind == "scale":
        size = (max(1, round(width * value)), max(1, round(height * value)))
        return resize_image(image, size), (size[0] / width, size[1] / height)
    if kind == "jpeg":
        ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]),
                                   [cv2.IMWRITE_JPEG_QUALITY, int(value)])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].copy(), (1.0, 1.0)
    rgb = image.astype(np.float64) / 255.0
    if kind == "exposure":
        rgb = _linear_to_srgb(np.clip(_srgb_to_linear(rgb) * value, 0.0, 1.0))
    else:
        rgb = rgb * value
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), (1.0, 1.0)


def map_back(lesions, scale) -> list[dict]:
    """Lesion records of a photo resized by ``scale`` (sx, sy), in the original's pixels.

    ``centroid`` is mapped by pixel centres (``x = (x' + 0.5) / sx - 0.5``), ``bbox`` by pixel
    edges (``x = x' / sx``, ``w = w' / sx``, floats); other fields are kept.
    """
    sx, sy = scale
    out = []
    for lesion in lesions:
        x, y = lesion["centroid"]
        bx, by, bw, bh = lesion["bbox"]
        out.append({**lesion, "centroid": [(x + 0.5) / sx - 0.5, (y + 0.5) / sy - 0.5],
                    "bbox": [bx / sx, by / sy, bw / sx, bh / sy]})
    return out


def refound(original, perturbed, *, margin=MARGIN, min_radius=MIN_RADIUS) -> np.ndarray:
    """Which lesion of the original each is found again by, one-to-one (module docstring).

    Parameters
    ----------
    original, perturbed : list of dict
        Lesion records (``bbox`` [x, y, w, h], ``centroid`` [x, y], ``area_px``); the
        perturbed ones already in the original's pixels (:func:`map_back`).
    margin : float
        Pixels by which each original box is grown on every side.
    min_radius : float
        Smallest distance from the original centroid that counts.

    Returns
    -------
    ndarray
        int (len(original),): index of the perturbed detection that found the lesion, or -1.
    """
    found = np.full(len(original), -1, np.int64)
    if not original or not perturbed:
        return found
    boxes = np.array([lesion["bbox"] for lesion in original], np.float64)
    centres = np.array([lesion["centroid"] for lesion in original], np.float64)
    radius = np.maximum(np.sqrt(np.array([lesion["area_px"] for lesion in original],
                                         np.float64) / np.pi), min_radius)
    points = np.array([lesion["centroid"] for lesion in perturbed], np.float64)
    # Box of pixels x .. x + w - 1 spans x - 0.5 .. x + w - 0.5 in centre coordinates.
    low = boxes[:, None, :2] - 0.5 - margin
    high = boxes[:, None, :2] + boxes[:, None, 2:] - 0.5 + margin
    in_box = np.all((points[None] >= low) & (points[None] <= high), axis=-1)
    distance = np.linalg.norm(points[None] - centres[:, None], axis=-1)
    allowed = in_box | (distance <= radius[:, None])
    cost = np.where(allowed, distance, 1e9)
    rows, cols = linear_sum_assignment(cost)
    keep = allowed[rows, cols]
    found[rows[keep]] = cols[keep]
    return found


def stability_row(original, perturbed, **options) -> dict:
    """``lesions``, ``detections``, ``refound``, ``refound_share``, ``count_change`` of one
    photo and perturbation (shares None when the original has no lesion)."""
    hits = int((refound(original, perturbed, **options) >= 0).sum())
    total = len(original)
    return {"lesions": total, "detections": len(perturbed), "refound": hits,
            "refound_share": hits / total if total else None,
            "count_change": (len(perturbed) - total) / total if total else None}


def detection_stability(image, detector, *, perturbations=DEFAULT_PERTURBATIONS,
                        margin=MARGIN, min_radius=MIN_RADIUS) -> dict:
    """Run ``detector`` on a photo and on each perturbed copy; compare the lesions.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    detector : callable
        ``detector(image) -> list of dict`` lesion records, as :func:`lesiontrack.detect`.
    perturbations : sequence of str
        Names for :func:`perturb`.
    margin, min_radius : float
        Rule of :func:`refound`.

    Returns
    -------
    dict
        ``original``: its lesions; per perturbation name a :func:`stability_row` with also
        ``lesions_back`` (the perturbed photo's lesions in the original's pixels) and
        ``found_by`` (the output of :func:`refound`).
    """
    original = detector(image)
    result = {"original": original}
    for name in perturbations:
        perturbed_image, scale = perturb(image, name)
        back = map_back(detector(perturbed_image), scale)
        found_by = refound(original, back, margin=margin, min_radius=min_radius)
        result[name] = {**stability_row(original, back, margin=margin, min_radius=min_radius),
                        "lesions_back": back, "found_by": found_by.tolist()}
    return result


def pooled(rows) -> dict:
    """The rows of several photos (:func:`stability_row`) summed into one.

    Adds ``worst_count_change`` (largest absolute change of a photo's count) and
    ``meets_targets``: share found again at least :data:`REFOUND_TARGET` and every photo's
    count within :data:`COUNT_CHANGE_TARGET`.
    """
    rows = list(rows)
    lesions = sum(row["lesions"] for row in rows)
    detections = sum(row["detections"] for row in rows)
    hits = sum(row["refound"] for row in rows)
    changes = [abs(row["count_change"]) for row in rows if row["count_change"] is not None]
    share = hits / lesions if lesions else None
    worst = max(changes) if changes else None
    return {"lesions": lesions, "detections": detections, "refound": hits,
            "refound_share": share,
            "count_change": (detections - lesions) / lesions if lesions else None,
            "worst_count_change": worst,
            "meets_targets": bool(share is not None and share >= REFOUND_TARGET
                                  and worst is not None and worst <= COUNT_CHANGE_TARGET)}
