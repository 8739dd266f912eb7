"""Match lesions between two visits and report how each one changed.

Li, Esteva et al. 2016 (sec. 3.3, fig. 1) track lesions by carrying each lesion found at the
first visit t0 through the dense flow t0 -> t1 and pairing it with a lesion found at t1. Here
the pairing is a one-to-one assignment (Hungarian algorithm, Kuhn 1955, via
``scipy.optimize.linear_sum_assignment``) minimising, for t0 lesion i and t1 lesion j::

    cost_ij = (d_ij / gate)^2 + w * (a_ij / colour_scale)^2                          (1)

with ``d_ij`` the distance between lesion i's carried centroid and lesion j's centroid,
``gate`` = ``max_distance`` x the image diagonal (pairs farther apart are never matched) and
``a_ij`` the difference of their colours (below). The match confidence is ``exp(-cost / 2)``
with the distance term scaled by ``gate / 2`` (so 0.14 at the gate with equal colours), times
the forward-backward consistency of the flow over the t0 lesion
(:mod:`lesiontrack.tracking.consistency`) when the backward flow is known; lesions whose flow
is inconsistent are marked ``flow_reliable: false``.

Colour. A lesion's colour is the mean CIE Lab colour inside the ellipse inscribed in its box
*minus* the mean Lab colour of the skin in a ring around it: the contrast with the
surrounding skin cancels most of the global illumination and white-balance change between
visits. Colour differences are Euclidean in Lab (Delta E 1976).

Change. The area ratio is corrected by the local area scale of the flow at the lesion
(the Jacobian determinant of ``p -> p + flow(p)``), so a change of viewpoint or zoom alone does
not flag growth. A match is ``changed`` when that ratio leaves ``[1/area_change, area_change]``
or its colour changed by more than ``colour_change``.
"""
from __future__ import annotations

import logging
import math

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from lesiontrack.imaging import check_image, sample_flow

log = logging.getLogger(__name__)

MAX_DISTANCE = 0.05
COLOUR_SCALE = 20.0
COLOUR_WEIGHT = 0.25
AREA_CHANGE = 1.5
COLOUR_CHANGE = 12.0
RING = 0.75  # ring width around a lesion, as a fraction of its box's mean half-side


# --------------------------------------------------------------------------- numerics


def local_area_scale(flow, points, *, radius=8) -> np.ndarray:
    """Jacobian determinant of ``p -> p + flow(p)`` averaged in a window around each point.

    Parameters
    ----------
    flow : ndarray, float32 (H, W, 2)
    points : array-like (N, 2)
        (x, y).
    radius : int
        Half-side of the averaging window in pixels.

    Returns
    -------
    ndarray, float64 (N,)
        Local area magnification from t0 to t1 (1 for a translation).
    """
    flow = np.asarray(flow, np.float64)
    dudy, dudx = np.gradient(flow[..., 0])
    dvdy, dvdx = np.gradient(flow[..., 1])
    determinant = (1 + dudx) * (1 + dvdy) - dudy * dvdx
    height, width = determinant.shape
    scales = []
    for x, y in np.asarray(points, np.float64).reshape(-1, 2):
        col, row = int(round(np.clip(x, 0, width - 1))), int(round(np.clip(y, 0, height - 1)))
        window = determinant[max(0, row - radius):row + radius + 1, max(0, col - radius):col + radius + 1]
        scales.append(float(np.clip(window.mean(), 0.05, 20.0)))
    return np.asarray(scales)


def lesion_colours(image, lesions, *, ring=RING) -> np.ndarray:
    """Mean Lab colour inside each lesion's inscribed ellipse minus that of a skin ring.

    Parameters
    ----------
    image : ndarray, uint8 (H, W, 3) RGB
    lesions : list of dict
        With ``bbox`` [x, y, w, h].
    ring : float
        Ring width as a fraction of the box's mean half-side (at least 3 px).

    Returns
    -------
    ndarray, float64 (N, 3)
        L*, a*, b* contrast of each lesion with its surrounding skin.
    """
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    height, width = image.shape[:2]
    colours = []
    for lesion in lesions:
        x, y, w, h = (float(v) for v in lesion["bbox"])
        cx, cy = x + w / 2.0, y + h / 2.0
        ax, ay = max(w / 2.0, 1.0), max(h / 2.0, 1.0)
        margin = max(3.0, ring * (ax + ay) / 2.0)
        x0, x1 = int(max(0, math.floor(cx - ax - margin))), int(min(width, math.ceil(cx + ax + margin) + 1))
        y0, y1 = int(max(0, math.floor(cy - ay - margin))), int(min(height, math.ceil(cy + ay + margin) + 1))
        if x1 <= x0 or y1 <= y0:
            colours.append(np.zeros(3))
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1] + 0.5
        inner = ((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2 <= 1.0
        outer = ((xs - cx) / (ax + margin)) ** 2 + ((ys - cy) / (ay + margin)) ** 2 <= 1.0
        patch = lab[y0:y1, x0:x1].reshape(-1, 3)
        inner, skin = inner.ravel(), (outer & ~inner).ravel()
        if not inner.any():
            inner = np.zeros_like(inner)
            inner[np.argmin((xs.ravel() - cx) ** 2 + (ys.ravel() - cy) ** 2)] = True
        lesion_mean = patch[inner].mean(0)
        skin_mean = patch[skin].mean(0) if skin.any() else lesion_mean
        colours.append(lesion_mean - skin_mean)
    return np.asarray(colours, np.float64).reshape(-1, 3)


def assign(carried, centroids1, colours0, colours1, *, gate, colour_scale=COLOUR_SCALE,
           colour_weight=COLOUR_WEIGHT):
    """One-to-one assignment minimising eq. (1) under the distance gate.

    Parameters
    ----------
    carried : ndarray (N, 2)
        t0 centroids carried into t1 by the flow.
    centroids1 : ndarray (M, 2)
        t1 centroids.
    colours0, colours1 : ndarray (N, 3), (M, 3)
        Lab contrasts (:func:`lesion_colours`).
    gate : float
        Maximum carried distance in pixels.

    Returns
    -------
    list of (int, int, float, float, float)
        (i, j, distance px, colour difference, confidence) per match, by i.
    """
    carried = np.asarray(carried, np.float64).reshape(-1, 2)
    centroids1 = np.asarray(centroids1, np.float64).reshape(-1, 2)
    if len(carried) == 0 or len(centroids1) == 0:
        return []
    distance = np.linalg.norm(carried[:, None] - centroids1[None], axis=-1)
    colour = np.linalg.norm(np.asarray(colours0)[:, None] - np.asarray(colours1)[None], axis=-1)
    cost = (distance / gate) ** 2 + colour_weight * (colour / colour_scale) ** 2
    infeasible = distance > gate
    # A large finite cost keeps the problem solvable; such pairs are dropped afterwards.
    big = 1e6
    rows, cols = linear_sum_assignment(np.where(infeasible, big, cost))
    matches = []
    for i, j in zip(rows, cols):
        if infeasible[i, j]:
            continue
        energy = (distance[i, j] / (gate / 2.0)) ** 2 + colour_weight * (colour[i, j] / colour_scale) ** 2
        matches.append((int(i), int(j), float(distance[i, j]), float(colour[i, j]),
                        float(math.exp(-energy / 2.0))))
    return matches


# --------------------------------------------------------------------------- pipeline


def match_lesions(image0, image1, *, flow=None, method="net", weights="default",
                  detector_weights="default", threshold=0.5, lesions0=None, lesions1=None,
                  max_distance=MAX_DISTANCE, colour_scale=COLOUR_SCALE,
                  colour_weight=COLOUR_WEIGHT, area_change=AREA_CHANGE,
                  colour_change=COLOUR_CHANGE, backward_flow=None, consistency=True) -> dict:
    """Find the lesions of both visits, match them one-to-one and report the changes.

    Parameters
    ----------
    image0, image1 : ndarray, uint8 (H, W, 3), (H1, W1, 3)
        First and second visit, RGB.
    flow : ndarray, float32 (H, W, 2), optional
        Forward flow image0 -> image1 (pixels of image1); default computed with ``method``.
    method : {"net", "deepflow", "dis", "siftflow", "dsp"}
        :func:`lesiontrack.tracking.flow.estimate_flow` method when ``flow`` is not given.
    weights : "default" or path-like
        Tracker weights for ``method="net"``.
    detector_weights : "default" or path-like
        Detector weights when ``lesions0`` / ``lesions1`` are not given.
    threshold : float
        Detector P(lesion) threshold.
    lesions0, lesions1 : list of dict, optional
        Lesions as :func:`lesiontrack.detection.detect.detect` returns them (``id``, ``bbox``,
        ``centroid``, ``area_px``, ...); detected when not given.
    max_distance : float
        Gate on the carried distance, as a fraction of image1's diagonal.
    colour_scale, colour_weight : float
        Colour term of eq. (1).
    area_change : float
        Area ratio (corrected for the local scale of the flow) beyond which a lesion changed.
    colour_change : float
        Lab colour change (Delta E 1976 of the contrast with the skin) beyond which a lesion
        changed.
    backward_flow : ndarray, float32 (H1, W1, 2), optional
        Flow image1 -> image0, for the forward-backward confidence of a given ``flow``.
    consistency : bool
        When the flow is computed here, also compute the backward flow (twice the flow time)
        and its forward-backward confidence
        (:func:`lesiontrack.tracking.consistency.forward_backward_confidence`).

    Returns
    -------
    dict
        ``matches``: list of {``id0``, ``id1``, ``centroid0``, ``centroid1``, ``carried``,
        ``distance_px``, ``confidence``, ``flow_confidence``, ``flow_reliable``, ``area0``,
        ``area1``, ``local_scale``, ``area_ratio``, ``colour_change``, ``changed``,
        ``changes``}; ``gone``: t0 lesions without a match ({``id``, ``centroid``,
        ``carried``, ``out_of_view``, ``flow_confidence``, ``flow_reliable``}); ``new``: t1
        lesions without a match ({``id``, ``centroid``}); ``lesions0``, ``lesions1``;
        ``method``; ``parameters``. ``flow_confidence`` is the mean forward-backward
        confidence over the t0 lesion's box and ``flow_reliable`` whether it reaches
        :data:`lesiontrack.tracking.consistency.RELIABLE`; the match ``confidence`` (eq. 1)
        is multiplied by it. Both are None when no backward flow is available.
    """
    image0 = check_image(image0, "image0")
    image1 = check_image(image1, "image1")
    if lesions0 is None or lesions1 is None:
        from lesiontrack.detection.detect import detect, load_detector

        model = load_detector(detector_weights)
        if lesions0 is None:
            lesions0 = detect(image0, model=model, threshold=threshold)
        if lesions1 is None:
            lesions1 = detect(image1, model=model, threshold=threshold)
    if flow is None:
        from lesiontrack.tracking.flow import estimate_flow

        options = {"weights": weights} if method == "net" else {}
        flow = estimate_flow(image0, image1, method=method, **options)
        if consistency and backward_flow is None:
            backward_flow = estimate_flow(image1, image0, method=method, **options)
        used_method = method
    else:
        used_method = "given"
    flow = np.asarray(flow, np.float32)
    if flow.shape != image0.shape[:2] + (2,):
        raise ValueError(f"flow shape {flow.shape} does not match image0 {image0.shape[:2]} + (2,)")
    height1, width1 = image1.shape[:2]
    gate = max_distance * math.hypot(width1, height1)

    centroids0 = np.asarray([l["centroid"] for l in lesions0], np.float64).reshape(-1, 2)
    centroids1 = np.asarray([l["centroid"] for l in lesions1], np.float64).reshape(-1, 2)
    carried = centroids0 + sample_flow(flow, centroids0)
    flow_confidence = [None] * len(lesions0)
    if backward_flow is not None:
        from lesiontrack.tracking.consistency import (forward_backward_confidence,
                                                      region_confidence)

        per_pixel = forward_backward_confidence(flow, backward_flow)
        boxes = [l.get("bbox") or [*(np.asarray(l["centroid"]) - 1.5), 3, 3] for l in lesions0]
        flow_confidence = [float(v) for v in region_confidence(per_pixel, boxes)]
    scales = local_area_scale(flow, centroids0)
    colours0 = lesion_colours(image0, lesions0)
    colours1 = lesion_colours(image1, lesions1)
    pairs = assign(carried, centroids1, colours0, colours1, gate=gate,
                   colour_scale=colour_scale, colour_weight=colour_weight)

    matches = []
    for i, j, distance, colour, confidence in pairs:
        area0 = float(lesions0[i].get("area_px", _box_area(lesions0[i])))
        area1 = float(lesions1[j].get("area_px", _box_area(lesions1[j])))
        ratio = area1 / max(area0 * scales[i], 1e-6)
        changes = []
        if ratio > area_change:
            changes.append("grown")
        elif ratio < 1.0 / area_change:
            changes.append("shrunk")
        if colour > colour_change:
            changes.append("colour")
        matches.append({
            "id0": lesions0[i]["id"], "id1": lesions1[j]["id"],
            "centroid0": _point(centroids0[i]), "centroid1": _point(centroids1[j]),
            "carried": _point(carried[i]), "distance_px": round(distance, 2),
            "confidence": round(confidence * (1.0 if flow_confidence[i] is None
                                              else flow_confidence[i]), 4),
            **_reliability(flow_confidence[i]), "area0": area0, "area1": area1,
            "local_scale": round(float(scales[i]), 4), "area_ratio": round(float(ratio), 4),
            "colour_change": round(colour, 2), "changed": bool(changes), "changes": changes,
        })
    matched0 = {i for i, *_ in pairs}
    matched1 = {j for _, j, *_ in pairs}
    gone = [{"id": lesions0[i]["id"], "centroid": _point(centroids0[i]),
             "carried": _point(carried[i]),
             "out_of_view": bool(not (0 <= carried[i, 0] <= width1 - 1
                                      and 0 <= carried[i, 1] <= height1 - 1)),
             **_reliability(flow_confidence[i])}
            for i in range(len(lesions0)) if i not in matched0]
    new = [{"id": lesions1[j]["id"], "centroid": _point(centroids1[j])}
           for j in range(len(lesions1)) if j not in matched1]
    log.info("%d matched, %d gone, %d new", len(matches), len(gone), len(new))
    return {
        "matches": matches, "gone": gone, "new": new,
        "lesions0": list(lesions0), "lesions1": list(lesions1), "method": used_method,
        "parameters": {"max_distance": max_distance, "gate_px": round(gate, 2),
                       "colour_scale": colour_scale, "colour_weight": colour_weight,
                       "area_change": area_change, "colour_change": colour_change},
    }


def _reliability(value):
    """``flow_confidence`` and ``flow_reliable`` fields of a lesion (None when unknown)."""
    if value is None:
        return {"flow_confidence": None, "flow_reliable": None}
    from lesiontrack.tracking.consistency import RELIABLE

    return {"flow_confidence": round(value, 4), "flow_reliable": bool(value >= RELIABLE)}


def _point(values):
    return [round(float(values[0]), 2), round(float(values[1]), 2)]


def _box_area(lesion):
    return float(lesion["bbox"][2]) * float(lesion["bbox"][3])


# --------------------------------------------------------------------------- drawing

MATCH_COLOUR = (40, 200, 60)
CHANGED_COLOUR = (255, 40, 40)
GONE_COLOUR = (60, 140, 255)
NEW_COLOUR = (255, 0, 220)


def draw_matches(image0, image1, result) -> np.ndarray:
    """Both visits side by side with a line per match; changed lesions in red.

    Parameters
    ----------
    image0, image1 : ndarray, uint8 (H, W, 3)
    result : dict
        From :func:`match_lesions`.

    Returns
    -------
    ndarray, uint8 (max(H, H1), W + gap + W1, 3) RGB
        Green: matched; red: matched and changed; blue: gone (t0 only); magenta: new
        (t1 only).
    """
    height = max(image0.shape[0], image1.shape[0])
    gap = max(8, image0.shape[1] // 100)
    offset = image0.shape[1] + gap
    canvas = np.full((height, offset + image1.shape[1], 3), 255, np.uint8)
    canvas[:image0.shape[0], :image0.shape[1]] = image0
    canvas[:image1.shape[0], offset:] = image1
    thickness = max(1, round(height / 400))
    font = max(0.4, height / 1400)
    boxes0 = {l["id"]: l["bbox"] for l in result.get("lesions0", [])}
    boxes1 = {l["id"]: l["bbox"] for l in result.get("lesions1", [])}

    def radius(box):
        return max(4, int(round(max(box[2], box[3]) / 2 + 3))) if box else 8

    def at(point, dx=0):
        return int(round(point[0])) + dx, int(round(point[1]))

    for match in result["matches"]:
        colour = CHANGED_COLOUR if match["changed"] else MATCH_COLOUR
        width = thickness * (2 if match["changed"] else 1)
        p0, p1 = at(match["centroid0"]), at(match["centroid1"], offset)
        cv2.circle(canvas, p0, radius(boxes0.get(match["id0"])), colour, width, cv2.LINE_AA)
        cv2.circle(canvas, p1, radius(boxes1.get(match["id1"])), colour, width, cv2.LINE_AA)
        cv2.line(canvas, p0, p1, colour, width, cv2.LINE_AA)
        label = str(match["id0"]) + ("*" if match["changed"] else "")
        cv2.putText(canvas, label, (p0[0] + 6, p0[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, font,
                    colour, thickness, cv2.LINE_AA)
    for lesion in result["gone"]:
        p0 = at(lesion["centroid"])
        r = radius(boxes0.get(lesion["id"]))
        cv2.line(canvas, (p0[0] - r, p0[1] - r), (p0[0] + r, p0[1] + r), GONE_COLOUR, thickness * 2)
        cv2.line(canvas, (p0[0] - r, p0[1] + r), (p0[0] + r, p0[1] - r), GONE_COLOUR, thickness * 2)
    for lesion in result["new"]:
        p1 = at(lesion["centroid"], offset)
        cv2.circle(canvas, p1, radius(boxes1.get(lesion["id"])), NEW_COLOUR, thickness * 2, cv2.LINE_AA)
    legend = [("matched", MATCH_COLOUR), ("changed", CHANGED_COLOUR), ("gone", GONE_COLOUR),
              ("new", NEW_COLOUR)]
    y = int(22 * font / 0.5)
    for text, colour in legend:
        cv2.putText(canvas, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thickness + 2,
                    cv2.LINE_AA)
        cv2.putText(canvas, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, font, colour, thickness, cv2.LINE_AA)
        y += int(20 * font / 0.5)
    return canvas
