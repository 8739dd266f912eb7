"""Detections on regions that are neither lesion to find nor background: exact cases."""
import numpy as np
import pytest

from lesiontrack import metrics


def test_neutral_detections_table():
    mask = np.zeros((20, 30), bool)
    mask[2:5, 20:23] = True  # an ignored spot, listed nowhere else
    centroids = [[21.0, 3.0],   # on the spot, unmatched: neutral
                 [21.4, 4.6],   # rounds to (21, 5): just off the spot, a false positive
                 [5.0, 15.0],   # in the listed box, unmatched: neutral
                 [21.0, 3.0],   # on the spot but matched to a true lesion: a hit, kept
                 [29.9, 19.9],  # background corner (clipped look-up): a false positive
                 [-3.0, 3.0]]   # left of the image, nearest pixel (0, 3) is not neutral
    pred_to_true = [-1, -1, -1, 0, -1, -1]
    neutral = metrics.neutral_detections(centroids, pred_to_true, neutral_mask=mask,
                                         neutral_boxes=[[4, 14, 2, 2]])
    assert neutral.tolist() == [True, False, True, False, False, False]
    assert metrics.neutral_detections(centroids, pred_to_true).tolist() == [False] * 6
    assert metrics.neutral_detections(np.zeros((0, 2)), [], neutral_mask=mask).shape == (0,)


def test_neutral_detections_leave_the_froc_of_the_rest():
    boxes = np.array([[0, 0, 10, 10]], float)
    centroids = np.array([[50.0, 50.0], [5.0, 5.0], [80.0, 80.0]])
    scores = np.array([0.9, 0.8, 0.7])
    pred_to_true, _, _ = metrics.match_detections(centroids, boxes, scores=scores)
    neutral = metrics.neutral_detections(centroids, pred_to_true,
                                         neutral_boxes=[[45, 45, 10, 10]])
    fp, sens, thresholds = metrics.froc([(centroids[~neutral], scores[~neutral])], [boxes])
    # Without the neutral detection: the hit at 0.8 comes first, at no false positive.
    assert thresholds.tolist() == [0.8, 0.7]
    assert fp.tolist() == [0.0, 1.0] and sens.tolist() == [1.0, 1.0]
    fp_all, _, _ = metrics.froc([(centroids, scores)], [boxes])
    assert fp_all.tolist() == [1.0, 1.0, 2.0]


def test_neutral_detections_reject_mismatched_inputs():
    with pytest.raises(ValueError):
        metrics.neutral_detections([[1.0, 1.0]], [-1, -1])
    with pytest.raises(ValueError):
        metrics.neutral_detections([[1.0, 1.0]], [-1], neutral_mask=np.zeros(5, bool))
