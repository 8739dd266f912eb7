"""Evaluation metrics, in numpy (no file access).

Detection (FROC, lesion- and pixel-level ROC) and tracking (PCK) figures of Li, Esteva et al.
2016; each section below is self-contained.
"""
from __future__ import annotations

import numpy as np

from lesiontrack.imaging import sample_flow

# =========================================================================== Detection metrics
#
# Li, Esteva et al. 2016 fig. 4 compare detectors by FROC (sensitivity against false positives
# per image) and by ROC of malignant against benign. A prediction counts as a hit when its
# centroid falls inside a true lesion's box [x, y, w, h] (COCO, pixels); one that matches none
# is a false positive unless its centroid lies on a region that is neither lesion to find nor
# background (:func:`neutral_detections`), where it is not counted at all.


def centroid_in_boxes(centroids, boxes) -> np.ndarray:
    """Which centroids fall inside which boxes (edges included).

    Parameters
    ----------
    centroids : array_like
        float (N, 2) as [x, y] in pixels.
    boxes : array_like
        float (M, 4) as [x, y, w, h] in pixels.

    Returns
    -------
    ndarray
        bool (N, M).
    """
    centroids = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x, y = centroids[:, 0:1], centroids[:, 1:2]
    return ((x >= boxes[:, 0]) & (x <= boxes[:, 0] + boxes[:, 2])
            & (y >= boxes[:, 1]) & (y <= boxes[:, 1] + boxes[:, 3]))


def match_detections(pred_centroids, true_boxes, *, scores=None):
    """Match predicted lesions to true lesions, greedily by descending score.

    A prediction matches a true lesion when its centroid falls inside the lesion's box; each
    true lesion is matched at most once. Predictions are taken highest score first (ties keep
    input order); a prediction inside several free boxes takes the one whose centre is
    nearest. A prediction whose centroid lies only inside boxes already matched is a
    *duplicate* (a second detection of a found lesion), not a hit.

    Parameters
    ----------
    pred_centroids : array_like
        float (N, 2), [x, y] pixels.
    true_boxes : array_like
        float (M, 4), [x, y, w, h] pixels.
    scores : array_like, optional
        float (N,); order of matching. Default: input order.

    Returns
    -------
    pred_to_true : ndarray
        int (N,), index of the matched true lesion or -1.
    true_to_pred : ndarray
        int (M,), index of the matching prediction or -1.
    duplicate : ndarray
        bool (N,), unmatched predictions whose centroid lies in an already matched box.
    """
    centroids = np.asarray(pred_centroids, dtype=np.float64).reshape(-1, 2)
    boxes = np.asarray(true_boxes, dtype=np.float64).reshape(-1, 4)
    n_pred, n_true = len(centroids), len(boxes)
    if scores is None:
        order = np.arange(n_pred)
    else:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != n_pred:
            raise ValueError(f"{len(scores)} scores for {n_pred} predictions")
        order = np.argsort(-scores, kind="stable")
    inside = centroid_in_boxes(centroids, boxes)
    centres = boxes[:, :2] + boxes[:, 2:] / 2.0
    pred_to_true = np.full(n_pred, -1, dtype=np.int64)
    true_to_pred = np.full(n_true, -1, dtype=np.int64)
    duplicate = np.zeros(n_pred, dtype=bool)
    for index in order:
        candidates = np.flatnonzero(inside[index])
        if candidates.size == 0:
            continue
        free = candidates[true_to_pred[candidates] < 0]
        if free.size == 0:
            duplicate[index] = True
            continue
        distance = np.sum((centres[free] - centroids[index]) ** 2, axis=1)
        chosen = free[int(np.argmin(distance))]
        pred_to_true[index] = chosen
        true_to_pred[chosen] = index
    return pred_to_true, true_to_pred, duplicate


def froc(per_image_predictions, per_image_truths, *, thresholds=None,
         duplicates_are_false_positives=False):
    """Free-response ROC: sensitivity against mean false positives per image.

    Parameters
    ----------
    per_image_predictions : sequence of (centroids, scores)
        Per image: float (N, 2) [x, y] centroids and float (N,) scores.
    per_image_truths : sequence of array_like
        Per image: float (M, 4) true boxes [x, y, w, h].
    thresholds : array_like, optional
        Score thresholds; a prediction is kept when ``score >= threshold``. Default: every
        distinct score of a hit or a counted false positive, descending (the exact curve).
    duplicates_are_false_positives : bool
        Count second detections of an already found lesion as false positives. Default False
        (they are ignored, as in the CAMELYON16 FROC).

    Returns
    -------
    fp_per_image : ndarray
        float (T,), in the order of ``thresholds``.
    sensitivity : ndarray
        float (T,), found true lesions / all true lesions (0 when there are none).
    thresholds : ndarray
        float (T,).

    Notes
    -----
    Greedy matching by descending score makes the matching at any threshold the prefix of the
    matching with every prediction, so each image is matched once.
    """
    if len(per_image_predictions) != len(per_image_truths):
        raise ValueError(f"{len(per_image_predictions)} predicted images for "
                         f"{len(per_image_truths)} annotated images")
    hit_scores, fp_scores, n_true = [], [], 0
    for (centroids, scores), boxes in zip(per_image_predictions, per_image_truths):
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        pred_to_true, _, duplicate = match_detections(centroids, boxes, scores=scores)
        n_true += len(np.asarray(boxes).reshape(-1, 4))
        hit_scores.append(scores[pred_to_true >= 0])
        false = pred_to_true < 0
        if not duplicates_are_false_positives:
            false &= ~duplicate
        fp_scores.append(scores[false])
    hit_scores = np.sort(np.concatenate(hit_scores)) if hit_scores else np.zeros(0)
    fp_scores = np.sort(np.concatenate(fp_scores)) if fp_scores else np.zeros(0)
    if thresholds is None:
        thresholds = np.unique(np.concatenate([hit_scores, fp_scores]))[::-1]
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    # Counts of scores >= t via binary search on the sorted scores.
    hits = len(hit_scores) - np.searchsorted(hit_scores, thresholds, side="left")
    fps = len(fp_scores) - np.searchsorted(fp_scores, thresholds, side="left")
    n_images = max(len(per_image_truths), 1)
    sensitivity = hits / n_true if n_true else np.zeros(len(thresholds))
    return fps / n_images, np.asarray(sensitivity, dtype=np.float64), thresholds


def sensitivity_at_fp(fp_per_image, sensitivity, fp_rate=1.0) -> float:
    """Best sensitivity reached at no more than ``fp_rate`` false positives per image.

    Parameters
    ----------
    fp_per_image, sensitivity : array_like
        float (T,), an FROC curve (any order).
    fp_rate : float
        Allowed mean false positives per image.

    Returns
    -------
    float
        0 when no operating point is within the budget.
    """
    fp_per_image = np.asarray(fp_per_image, dtype=np.float64)
    sensitivity = np.asarray(sensitivity, dtype=np.float64)
    within = fp_per_image <= fp_rate + 1e-12
    return float(sensitivity[within].max()) if within.any() else 0.0


def neutral_detections(centroids, pred_to_true, *, neutral_mask=None, neutral_boxes=None):
    """Which detections are neither right nor wrong: left out of the FROC.

    A detection is neutral when it matched no true lesion (``pred_to_true`` -1, as from
    :func:`match_detections`) and its centroid, rounded to the nearest pixel, lies on a
    neutral pixel of ``neutral_mask`` or inside a neutral box (edges included, as
    :func:`centroid_in_boxes`). Dropping such detections before :func:`froc` leaves every
    match as it was: an unmatched detection holds no true lesion.

    Parameters
    ----------
    centroids : array_like
        float (N, 2), [x, y] pixels.
    pred_to_true : array_like
        int (N,), the matched true lesion of each detection or -1.
    neutral_mask : array_like, optional
        bool (H, W), pixels that are neither lesion to find nor background (e.g. a label
        map's ignored pixels and lesions of unknown diagnosis). Centroids outside the image
        take the nearest pixel.
    neutral_boxes : array_like, optional
        float (K, 4), [x, y, w, h] pixels of regions that are neither right nor wrong to
        detect.

    Returns
    -------
    ndarray
        bool (N,).
    """
    centroids = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    pred_to_true = np.asarray(pred_to_true).reshape(-1)
    if len(pred_to_true) != len(centroids):
        raise ValueError(f"{len(pred_to_true)} matches for {len(centroids)} detections")
    on_neutral = np.zeros(len(centroids), dtype=bool)
    if neutral_mask is not None and len(centroids):
        mask = np.asarray(neutral_mask, dtype=bool)
        if mask.ndim != 2 or not mask.size:
            raise ValueError(f"neutral mask of shape {mask.shape}, expected (H, W)")
        cols = np.clip(np.round(centroids[:, 0]).astype(np.int64), 0, mask.shape[1] - 1)
        rows = np.clip(np.round(centroids[:, 1]).astype(np.int64), 0, mask.shape[0] - 1)
        on_neutral |= mask[rows, cols]
    if neutral_boxes is not None:
        on_neutral |= centroid_in_boxes(centroids, neutral_boxes).any(axis=1)
    return on_neutral & (pred_to_true < 0)


def roc_curve(scores, labels):
    """Receiver operating characteristic with tied scores grouped.

    Parameters
    ----------
    scores : array_like
        float (N,), higher means positive.
    labels : array_like
        (N,), truthy = positive.

    Returns
    -------
    fpr, tpr : ndarray
        float (T + 1,), starting at (0, 0) and ending at (1, 1) (a rate is 0 when its class
        is empty).
    thresholds : ndarray
        float (T + 1,), ``inf`` then the distinct scores descending; point k counts
        ``score >= thresholds[k]`` as positive.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores for {labels.size} labels")
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    # Last index of each run of equal scores: a tie moves both rates at once.
    last = np.r_[np.flatnonzero(np.diff(scores) != 0), scores.size - 1] if scores.size else \
        np.zeros(0, dtype=np.int64)
    tps = np.cumsum(labels)[last] if scores.size else np.zeros(0)
    fps = (last + 1) - tps
    n_pos, n_neg = labels.sum(), (~labels).sum()
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.zeros(len(last) + 1)
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.zeros(len(last) + 1)
    return fpr.astype(np.float64), tpr.astype(np.float64), np.r_[np.inf, scores[last]]


def auc(fpr, tpr) -> float:
    """Area under a curve by the trapezoid rule (x must be monotonic).

    Parameters
    ----------
    fpr, tpr : array_like
        float (T,).

    Returns
    -------
    float
        nan for fewer than two points.
    """
    x = np.asarray(fpr, dtype=np.float64)
    y = np.asarray(tpr, dtype=np.float64)
    if x.size < 2:
        return float("nan")
    area = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))
    return abs(area)


def pixel_roc(heatmaps, label_maps, *, rng, max_pixels_per_image=20000):
    """Pixel-level ROC of lesion (benign or malignant) against background.

    Parameters
    ----------
    heatmaps : sequence of ndarray
        float (H, W) lesion scores per image.
    label_maps : sequence of ndarray
        uint8 (H, W): 0 background, 1 benign, 2 malignant, 255 ignored.
    rng : numpy.random.Generator
        Draws the pixel subsample.
    max_pixels_per_image : int
        Pixels kept per image (uniformly drawn among the non-ignored ones), for memory.

    Returns
    -------
    fpr, tpr, thresholds : ndarray
        As :func:`roc_curve`.
    """
    all_scores, all_labels = [], []
    for heatmap, labels in zip(heatmaps, label_maps):
        heatmap = np.asarray(heatmap, dtype=np.float64)
        labels = np.asarray(labels)
        if heatmap.shape != labels.shape:
            raise ValueError(f"heatmap {heatmap.shape} and label map {labels.shape} differ")
        keep = np.flatnonzero(labels.reshape(-1) != 255)
        if keep.size > max_pixels_per_image:
            keep = rng.choice(keep, size=max_pixels_per_image, replace=False)
        all_scores.append(heatmap.reshape(-1)[keep])
        all_labels.append(np.isin(labels.reshape(-1)[keep], (1, 2)))
    if not all_scores:
        return roc_curve([], [])
    return roc_curve(np.concatenate(all_scores), np.concatenate(all_labels))

# Pixel-level figures of a segmentation (validation of the detector during training).


def confusion_matrix(labels, predictions, *, num_classes=3, ignore=255):
    """Pixel confusion matrix, int64 (C, C), rows = truth, columns = prediction.

    ``labels`` and ``predictions`` are integer arrays of the same shape; ``ignore`` pixels of
    ``labels`` are left out.
    """
    labels = np.asarray(labels).ravel().astype(np.int64)
    predictions = np.asarray(predictions).ravel().astype(np.int64)
    valid = labels != ignore
    flat = labels[valid] * num_classes + predictions[valid]
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_iou(confusion):
    """Intersection over union per class from a confusion matrix; NaN for absent classes."""
    confusion = np.asarray(confusion, np.float64)
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


def histogram_auc(positive_counts, negative_counts):
    """ROC AUC from score histograms over the same ascending bins (ties count one half).

    Cheap enough to accumulate over whole validation photos: P(lesion) binned into a few
    hundred bins. NaN when either class is empty.
    """
    positive = np.asarray(positive_counts, np.float64)
    negative = np.asarray(negative_counts, np.float64)
    if positive.sum() == 0 or negative.sum() == 0:
        return float("nan")
    negatives_below = np.cumsum(negative) - negative
    wins = (positive * (negatives_below + 0.5 * negative)).sum()
    return float(wins / (positive.sum() * negative.sum()))


# Partly annotated photos and COCO average precision.
#
# Real body photos are annotated by hand and only in part: clear lesions (complete), doubtful
# ones (ambiguous) and, unmarked, freckles. An annotation is a centre and a radius (a circle;
# a box gives its centre and half its longer side). A detection is *on* an annotation when its
# box holds the centre or its centroid lies within radius + margin of it: small moles of
# 3-10 px get a detection box that may miss their centre by a pixel or two.

ANNOTATION_MARGIN = 4.0

#: Outcome of a detection on a partly annotated photo.
TRUE_DETECTION, NEUTRAL_DETECTION, FALSE_DETECTION = 1, 0, -1


def detections_on_annotations(boxes, centroids, centres, radii, *,
                              margin=ANNOTATION_MARGIN) -> np.ndarray:
    """Which detections are on which annotated lesions.

    Parameters
    ----------
    boxes : array_like
        float (N, 4), detection boxes [x, y, w, h] in pixels (edges included).
    centroids : array_like
        float (N, 2), detection centroids [x, y].
    centres : array_like
        float (M, 2), annotated lesion centres [x, y].
    radii : array_like
        float (M,), annotated lesion radii in pixels.
    margin : float
        Pixels added to each radius.

    Returns
    -------
    ndarray
        bool (N, M): the detection's box holds the centre, or its centroid lies within
        radius + margin of the centre.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centroids = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    radii = np.asarray(radii, dtype=np.float64).reshape(-1)
    if len(boxes) != len(centroids) or len(centres) != len(radii):
        raise ValueError(f"{len(boxes)} boxes for {len(centroids)} centroids, "
                         f"{len(centres)} centres for {len(radii)} radii")
    inside = centroid_in_boxes(centres, boxes).T
    distance = np.hypot(centroids[:, 0:1] - centres[:, 0], centroids[:, 1:2] - centres[:, 1])
    return inside | (distance <= radii + margin)


def partial_annotation_outcome(on, clear):
    """Found annotations and the outcome of each detection on a partly annotated photo.

    A clear lesion is found when any detection is on it. A detection is right
    (``TRUE_DETECTION``) when it is on a clear lesion, neither right nor wrong
    (``NEUTRAL_DETECTION``) when it is only on ambiguous annotations, and a false positive
    (``FALSE_DETECTION``) when it is on none.

    Parameters
    ----------
    on : array_like
        bool (N, M), from :func:`detections_on_annotations`.
    clear : array_like
        bool (M,), True for a clear lesion, False for an ambiguous annotation.

    Returns
    -------
    found : ndarray
        bool (M,), annotations with at least one detection on them.
    outcome : ndarray
        int8 (N,), ``TRUE_DETECTION``, ``NEUTRAL_DETECTION`` or ``FALSE_DETECTION``.
    """
    clear = np.asarray(clear, dtype=bool).reshape(-1)
    on = np.asarray(on, dtype=bool)
    if on.ndim != 2 or on.shape[1] != len(clear):
        raise ValueError(f"detections x annotations of shape {on.shape} for {len(clear)} "
                         "annotations")
    outcome = np.full(len(on), FALSE_DETECTION, dtype=np.int8)
    outcome[on[:, ~clear].any(axis=1)] = NEUTRAL_DETECTION
    outcome[on[:, clear].any(axis=1)] = TRUE_DETECTION
    return on.any(axis=0), outcome


def coco_average_precision(detections, truths, *, ignore=None, max_detections=100) -> dict:
    """COCO box average precision of one class (pycocotools ``COCOeval``).

    Parameters
    ----------
    detections : sequence of (boxes, scores)
        Per image float (N, 4) boxes [x, y, w, h] and float (N,) scores.
    truths : sequence of array_like
        Per image float (M, 4) true boxes.
    ignore : sequence of array_like, optional
        Per image float (K, 4) boxes that are neither right nor wrong to detect (COCO
        ``iscrowd`` regions: a detection on one is not counted).
    max_detections : int
        Detections per image kept, highest scores first (COCO's 100).

    Returns
    -------
    dict
        ``ap50`` (IoU 0.5), ``ap75``, ``ap`` (mean over IoU 0.5:0.95 in steps of 0.05),
        101-point interpolated as COCO; None without true boxes. ``images``, ``lesions``,
        ``detections`` counts.
    """
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} detected images for {len(truths)} annotated images")
    ignore = [np.zeros((0, 4))] * len(truths) if ignore is None else ignore
    images, annotations, results = [], [], []
    for image_id, ((boxes, scores), true, crowd) in enumerate(zip(detections, truths, ignore),
                                                              start=1):
        images.append({"id": image_id})
        for box, is_crowd in [(b, 0) for b in np.asarray(true, float).reshape(-1, 4)] + \
                [(b, 1) for b in np.asarray(crowd, float).reshape(-1, 4)]:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": 1, "bbox": [float(v) for v in box],
                                "area": float(box[2] * box[3]), "iscrowd": is_crowd})
        for box, score in zip(np.asarray(boxes, float).reshape(-1, 4),
                              np.asarray(scores, float).reshape(-1)):
            results.append({"image_id": image_id, "category_id": 1,
                            "bbox": [float(v) for v in box], "score": float(score)})
    lesions = sum(1 for a in annotations if not a["iscrowd"])
    counts = {"images": len(images), "lesions": lesions, "detections": len(results)}
    if not lesions:
        return {"ap50": None, "ap75": None, "ap": None, **counts}
    if not results:
        return {"ap50": 0.0, "ap75": 0.0, "ap": 0.0, **counts}
    # pycocotools reports its progress on stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations,
                         "categories": [{"id": 1, "name": "lesion"}]}
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), iouType="bbox")
        evaluation.params.maxDets = [1, 10, int(max_detections)]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    return {"ap": float(stats[0]), "ap50": float(stats[1]), "ap75": float(stats[2]), **counts}


# ======================================================================= end Detection metrics

# ============================================================================ Tracking metrics
#
# Li, Esteva et al. 2016 (fig. 6) and Long, Zhang, Darrell (NIPS 2014) score dense
# correspondence by the percentage of correct keypoints (PCK): a transferred keypoint is correct
# when it lands within alpha * L of its true position, L the image diagonal.


def endpoint_errors(flow, flow_true) -> np.ndarray:
    """End-point error ``||flow - flow_true||_2`` of every pixel or point.

    The one definition of the EPE, used by :func:`endpoint_error`, :func:`pck_curve`, the
    tracker's loss (:func:`lesiontrack.tracking.losses.robust_epe`) and its validation
    (:func:`lesiontrack.tracking.train.evaluate_flow`).

    Parameters
    ----------
    flow, flow_true : array_like
        float (..., 2), channel 0 = dx; the same shape.

    Returns
    -------
    ndarray
        float64 (...).
    """
    flow = np.asarray(flow, dtype=np.float64)
    flow_true = np.asarray(flow_true, dtype=np.float64)
    if flow.shape != flow_true.shape or flow.shape[-1:] != (2,):
        raise ValueError(f"flows must both be (..., 2), got {flow.shape} and {flow_true.shape}")
    return np.hypot(flow[..., 0] - flow_true[..., 0], flow[..., 1] - flow_true[..., 1])


def correct_fraction(errors, *, alphas, diagonal) -> np.ndarray:
    """Share of errors within each tolerance: ``mean(error <= alpha * L)``, the PCK rule.

    Parameters
    ----------
    errors : array_like
        float (N,) end-point errors in pixels.
    alphas : array_like
        float (A,) tolerances as fractions of the diagonal.
    diagonal : float or array_like
        L in pixels: one value, or float (N,) per error (pooling images of several sizes).

    Returns
    -------
    ndarray
        float64 (A,); nan when there are no errors.
    """
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    alphas = np.asarray(alphas, dtype=np.float64).reshape(-1)
    diagonal = np.asarray(diagonal, dtype=np.float64)
    if diagonal.ndim and diagonal.shape != errors.shape:
        raise ValueError(f"diagonal must be one value or one per point, got {diagonal.shape}")
    if errors.size == 0:
        return np.full(alphas.shape, np.nan)
    return np.mean(errors[None, :] <= alphas[:, None] * diagonal, axis=1)


def pck_curve(pred_points, true_points, *, alphas, diagonal) -> np.ndarray:
    """Percentage (fraction) of correct keypoints at each tolerance of ``alphas``.

    Parameters
    ----------
    pred_points, true_points : array_like
        float (N, 2), [x, y] pixels.
    alphas : array_like
        float (A,) tolerances as fractions of the diagonal.
    diagonal : float or array_like
        L in pixels: one value, or float (N,) per keypoint (pooling images of several sizes).

    Returns
    -------
    ndarray
        float (A,): fraction with ``||pred - true|| <= alpha * L`` (:func:`correct_fraction`);
        nan when there are no keypoints.
    """
    pred = np.asarray(pred_points, dtype=np.float64).reshape(-1, 2)
    true = np.asarray(true_points, dtype=np.float64).reshape(-1, 2)
    if pred.shape != true.shape:
        raise ValueError(f"{len(pred)} predicted points for {len(true)} true points")
    return correct_fraction(endpoint_errors(pred, true), alphas=alphas, diagonal=diagonal)


def _flow_errors(flow, flow_true, valid):
    """Per-pixel errors (H, W) and the mask of pixels that count (valid, finite truth)."""
    flow = np.asarray(flow, dtype=np.float64)
    flow_true = np.asarray(flow_true, dtype=np.float64)
    if flow.shape != flow_true.shape or flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flows must both be (H, W, 2), got {flow.shape} and {flow_true.shape}")
    mask = np.isfinite(flow_true).all(axis=2)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != flow.shape[:2]:
            raise ValueError(f"valid mask {valid.shape} does not match flow {flow.shape[:2]}")
        mask &= valid
    with np.errstate(invalid="ignore"):
        return endpoint_errors(flow, flow_true), mask


def endpoint_error(flow, flow_true, valid=None) -> float:
    """Mean end-point error ||flow - flow_true|| over the valid pixels.

    Parameters
    ----------
    flow, flow_true : array_like
        float (H, W, 2).
    valid : array_like, optional
        bool (H, W); every pixel if omitted. Non-finite true flow is never counted.

    Returns
    -------
    float
        Pixels; nan when no pixel counts.
    """
    errors, mask = _flow_errors(flow, flow_true, valid)
    return float(errors[mask].mean()) if mask.any() else float("nan")


def carry_points(flow, points) -> np.ndarray:
    """Carry t0 points to t1 along a forward flow: ``p + flow(p)``, bilinear at subpixels.

    Parameters
    ----------
    flow : array_like
        float (H, W, 2), forward t0 -> t1.
    points : array_like
        float (N, 2), [x, y] pixels in t0.

    Returns
    -------
    ndarray
        float64 (N, 2), [x, y] pixels in t1.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points + sample_flow(flow, points)


def instance_centroids(instances) -> dict:
    """Centroid [x, y] (float, pixels) of each instance id > 0 of a uint16 (H, W) map."""
    instances = np.asarray(instances)
    ids = np.unique(instances)
    ids = ids[ids > 0]
    if ids.size == 0:
        return {}
    ys, xs = np.nonzero(instances)
    labels = instances[ys, xs]
    count = np.bincount(labels, minlength=int(ids.max()) + 1).astype(np.float64)
    sum_x = np.bincount(labels, weights=xs, minlength=count.size)
    sum_y = np.bincount(labels, weights=ys, minlength=count.size)
    return {int(i): np.array([sum_x[i] / count[i], sum_y[i] / count[i]]) for i in ids}


def sample_keypoints_from_flow(flow, valid, instances, *, rng, n_skin=100):
    """Keypoints with known t1 positions: lesion centres and random skin points.

    Parameters
    ----------
    flow : array_like
        float (H, W, 2) true forward flow t0 -> t1.
    valid : array_like
        bool (H, W) where the true flow holds (the point stays in view).
    instances : array_like
        uint16 (H, W) t0 lesion instances (0 none).
    rng : numpy.random.Generator
        Draws the skin points.
    n_skin : int
        Skin points: valid pixels outside every lesion, drawn without replacement (fewer if
        there are fewer such pixels).

    Returns
    -------
    dict
        ``points0`` float (N, 2) [x, y] in t0, ``points1`` float (N, 2) true [x, y] in t1
        (``points0 + flow`` bilinear), ``kind`` str (N,) "lesion" or "skin", ``instance``
        int (N,) lesion id (0 for skin). Lesion centres are instance centroids whose nearest
        pixel is valid, in increasing id order, then the skin points.
    """
    flow = np.asarray(flow, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    instances = np.asarray(instances)
    if flow.shape[:2] != valid.shape or valid.shape != instances.shape:
        raise ValueError(f"flow {flow.shape[:2]}, valid {valid.shape} and instances "
                         f"{instances.shape} must have the same (H, W)")
    height, width = valid.shape
    centres, ids = [], []
    for instance, centre in instance_centroids(instances).items():
        column = int(np.clip(round(centre[0]), 0, width - 1))
        row = int(np.clip(round(centre[1]), 0, height - 1))
        if valid[row, column]:
            centres.append(centre)
            ids.append(instance)
    skin = np.flatnonzero((valid & (instances == 0)).reshape(-1))
    chosen = rng.choice(skin, size=min(int(n_skin), skin.size), replace=False) if skin.size \
        else np.zeros(0, np.int64)
    skin_points = np.stack([chosen % width, chosen // width], axis=1).astype(np.float64)
    points0 = np.concatenate([np.asarray(centres, np.float64).reshape(-1, 2), skin_points])
    return {
        "points0": points0,
        "points1": carry_points(flow, points0),
        "kind": np.array(["lesion"] * len(ids) + ["skin"] * len(skin_points), dtype=object),
        "instance": np.array(ids + [0] * len(skin_points), dtype=np.int64),
    }


def lesion_match_accuracy(carried_points, instance_ids, centres1) -> float:
    """Fraction of lesions whose carried centre lands nearest to the same lesion at t1.

    Parameters
    ----------
    carried_points : array_like
        float (N, 2) t0 lesion centres carried to t1 by a predicted flow.
    instance_ids : array_like
        int (N,) their lesion ids (shared across the pair).
    centres1 : dict
        Lesion id -> [x, y] centre at t1 (see :func:`instance_centroids`).

    Returns
    -------
    float
        nan when there is no lesion to match.
    """
    carried = np.asarray(carried_points, dtype=np.float64).reshape(-1, 2)
    instance_ids = np.asarray(instance_ids).reshape(-1)
    if carried.shape[0] != instance_ids.size:
        raise ValueError(f"{carried.shape[0]} points for {instance_ids.size} instance ids")
    if carried.shape[0] == 0 or not centres1:
        return float("nan")
    ids1 = np.array(sorted(centres1))
    targets = np.stack([np.asarray(centres1[i], np.float64) for i in ids1])
    distance = np.hypot(carried[:, None, 0] - targets[None, :, 0],
                        carried[:, None, 1] - targets[None, :, 1])
    return float(np.mean(ids1[np.argmin(distance, axis=1)] == instance_ids))

# ======================================================================== end Tracking metrics
