"""Detection metrics: exact tables for matching, FROC, ROC and AUC."""
import numpy as np
import pytest

from lesiontrack.metrics import (auc, centroid_in_boxes, froc, match_detections, pixel_roc,
                                 roc_curve, sensitivity_at_fp)


def test_centroid_in_boxes_includes_edges():
    inside = centroid_in_boxes([[0, 0], [10, 10], [10.5, 5], [5, -0.1]], [[0, 0, 10, 10]])
    assert inside[:, 0].tolist() == [True, True, False, False]


def test_match_detections_table():
    boxes = [[0, 0, 10, 10], [20, 0, 10, 10]]
    centroids = [[5, 5], [6, 6], [25, 5], [50, 50]]
    scores = [0.5, 0.9, 0.7, 0.8]
    pred_to_true, true_to_pred, duplicate = match_detections(centroids, boxes, scores=scores)
    # Highest score first: prediction 1 takes box 0, prediction 0 is a duplicate of it.
    assert pred_to_true.tolist() == [-1, 0, 1, -1]
    assert true_to_pred.tolist() == [1, 2]
    assert duplicate.tolist() == [True, False, False, False]


def test_match_detections_input_order_without_scores():
    pred_to_true, _, duplicate = match_detections([[5, 5], [6, 6]], [[0, 0, 10, 10]])
    assert pred_to_true.tolist() == [0, -1]
    assert duplicate.tolist() == [False, True]


def test_match_detections_overlapping_boxes_take_nearest_free_centre():
    boxes = [[0, 0, 20, 20], [8, 8, 20, 20]]  # centres (10, 10) and (18, 18)
    pred_to_true, true_to_pred, _ = match_detections([[17, 17], [12, 12]], boxes,
                                                     scores=[0.9, 0.8])
    assert pred_to_true.tolist() == [1, 0]
    assert true_to_pred.tolist() == [1, 0]


def test_match_detections_empty_inputs():
    pred_to_true, true_to_pred, duplicate = match_detections(np.zeros((0, 2)), [[0, 0, 5, 5]])
    assert pred_to_true.size == 0 and true_to_pred.tolist() == [-1] and duplicate.size == 0
    pred_to_true, true_to_pred, _ = match_detections([[1, 1]], np.zeros((0, 4)), scores=[1.0])
    assert pred_to_true.tolist() == [-1] and true_to_pred.size == 0


def test_match_detections_rejects_score_count():
    with pytest.raises(ValueError):
        match_detections([[1, 1]], [[0, 0, 5, 5]], scores=[0.1, 0.2])


def _froc_case():
    predictions = [
        (np.array([[5, 5], [50, 50], [6, 6]]), np.array([0.9, 0.8, 0.5])),  # hit, FP, duplicate
        (np.array([[25, 25], [90, 90]]), np.array([0.7, 0.6])),  # hit, FP
    ]
    truths = [np.array([[0, 0, 10, 10]]), np.array([[20, 20, 10, 10], [60, 60, 10, 10]])]
    return predictions, truths


def test_froc_exact_table():
    predictions, truths = _froc_case()
    fp, sens, thresholds = froc(predictions, truths)
    # The ignored duplicate (0.5) adds no operating point.
    assert thresholds.tolist() == [0.9, 0.8, 0.7, 0.6]
    np.testing.assert_allclose(fp, [0.0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(sens, [1 / 3, 1 / 3, 2 / 3, 2 / 3])


def test_froc_duplicates_as_false_positives_and_grid():
    predictions, truths = _froc_case()
    fp, sens, _ = froc(predictions, truths, thresholds=[1.0, 0.75, 0.0],
                       duplicates_are_false_positives=True)
    np.testing.assert_allclose(fp, [0.0, 0.5, 1.5])
    np.testing.assert_allclose(sens, [0.0, 1 / 3, 2 / 3])


def test_froc_without_lesions_or_predictions():
    fp, sens, _ = froc([(np.zeros((0, 2)), np.zeros(0))], [np.zeros((0, 4))], thresholds=[0.5])
    assert fp.tolist() == [0.0] and sens.tolist() == [0.0]
    with pytest.raises(ValueError):
        froc([], [np.zeros((0, 4))])


def test_sensitivity_at_fp_table():
    fp, sens = [0.0, 0.5, 1.0, 1.5], [0.2, 0.4, 0.6, 0.8]
    assert sensitivity_at_fp(fp, sens, 1.0) == pytest.approx(0.6)
    assert sensitivity_at_fp(fp, sens, 0.75) == pytest.approx(0.4)
    assert sensitivity_at_fp(fp, sens, 4.0) == pytest.approx(0.8)
    assert sensitivity_at_fp(fp, sens, -1.0) == 0.0


def test_roc_curve_with_ties_exact():
    fpr, tpr, thresholds = roc_curve([0.9, 0.8, 0.8, 0.3], [1, 1, 0, 0])
    assert thresholds.tolist() == [np.inf, 0.9, 0.8, 0.3]
    np.testing.assert_allclose(tpr, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(fpr, [0.0, 0.0, 0.5, 1.0])
    # Mann-Whitney: 3 wins and one tie over 4 pairs.
    assert auc(fpr, tpr) == pytest.approx(0.875)


@pytest.mark.parametrize("scores, labels, expected", [
    ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),
    ([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0], 0.0),
    ([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0], 0.5),
    ([0.3, 0.6, 0.4, 0.9, 0.1], [0, 1, 1, 0, 0], 4 / 6),
])
def test_auc_table(scores, labels, expected):
    fpr, tpr, _ = roc_curve(scores, labels)
    assert auc(fpr, tpr) == pytest.approx(expected)


def test_roc_curve_single_class_and_auc_degenerate():
    fpr, tpr, _ = roc_curve([0.2, 0.4], [1, 1])
    assert fpr.tolist() == [0.0, 0.0, 0.0] and tpr.tolist() == [0.0, 0.5, 1.0]
    assert np.isnan(auc([0.0], [0.0]))
    with pytest.raises(ValueError):
        roc_curve([0.1], [1, 0])


def test_pixel_roc_ignores_255_and_subsamples(rng):
    labels = np.zeros((20, 20), np.uint8)
    labels[5:10, 5:10] = 1
    labels[12:15, 12:15] = 2
    labels[0, :] = 255
    heatmap = np.where(np.isin(labels, (1, 2)), 0.9, 0.1)
    heatmap[0, :] = 1.0  # ignored pixels would spoil a perfect ranking
    fpr, tpr, _ = pixel_roc([heatmap], [labels], rng=rng)
    assert auc(fpr, tpr) == pytest.approx(1.0)
    fpr, tpr, thresholds = pixel_roc([heatmap, heatmap], [labels, labels], rng=rng,
                                     max_pixels_per_image=50)
    assert auc(fpr, tpr) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        pixel_roc([heatmap[:5]], [labels], rng=rng)
