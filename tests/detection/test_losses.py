"""Exact small tables for the detector loss, numpy reference against the Keras loss."""
import numpy as np
import pytest

from lesiontrack.detection.losses import (SegmentationLoss, class_weights_from_counts,
                                class_weights_from_labels, segmentation_loss, soft_dice_loss,
                                weighted_cross_entropy)

# Four pixels: background, benign, malignant, ignored.
P = np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5], [1.0, 0.0, 0.0]])
Y = np.array([0, 1, 2, 255])


def test_unweighted_cross_entropy_is_mean_over_labelled_pixels():
    assert weighted_cross_entropy(P, Y) == pytest.approx(np.log(2))


def test_weighted_cross_entropy_table():
    probabilities = np.array([[0.5, 0.5, 0.0], [0.25, 0.75, 0.0]])
    labels = np.array([0, 1])
    expected = (1 * np.log(2) + 3 * np.log(4 / 3)) / 4
    assert weighted_cross_entropy(probabilities, labels, class_weights=[1, 3, 1]) == \
        pytest.approx(expected)


def test_all_ignored_gives_zero():
    assert weighted_cross_entropy(P, np.full(4, 255)) == 0.0


def test_soft_dice_table():
    # benign: 2*0.5+1 / (1.0 + 1 + 1) = 2/3 ; malignant the same -> loss 1/3
    assert soft_dice_loss(P, Y, smooth=1.0) == pytest.approx(1 / 3)
    onehot = np.eye(3)[[0, 1, 2]]
    assert soft_dice_loss(onehot, Y[:3], smooth=0.0) == pytest.approx(0.0)


def test_class_weights_balance_pixel_counts():
    weights = class_weights_from_counts([90, 9, 1], power=1.0)
    # Inverse frequency: equal total weight per class, pixel-weighted mean 1.
    totals = weights * np.array([90, 9, 1])
    np.testing.assert_allclose(totals, totals[0])
    assert (weights * np.array([0.9, 0.09, 0.01])).sum() == pytest.approx(1.0)
    labels = [np.array([[0, 0, 1, 255]]), np.array([[0, 2]])]
    np.testing.assert_allclose(class_weights_from_labels(labels, power=1.0),
                               class_weights_from_counts([3, 1, 1], power=1.0))
    assert class_weights_from_counts([5, 0, 5])[1] == 1.0
    # Power 0: no weighting at all.
    np.testing.assert_allclose(class_weights_from_counts([90, 9, 1], power=0.0), [1, 1, 1])


@pytest.mark.parametrize("weights", [None, [0.2, 3.0, 1.5], [0.2, 3.0, 1.5, 0.7]])
@pytest.mark.parametrize("dice_weight", [0.0, 0.5])
def test_keras_loss_matches_numpy(weights, dice_weight):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 8, 8, 3))
    probabilities = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    labels = rng.integers(0, 4, size=(2, 8, 8)).astype(np.uint8)   # 3: unknown diagnosis
    labels[0, :2] = 255
    expected = segmentation_loss(probabilities, labels, class_weights=weights,
                                 dice_weight=dice_weight)
    loss = SegmentationLoss(weights, dice_weight=dice_weight)
    assert float(loss(labels, probabilities)) == pytest.approx(expected, rel=1e-5)
    assert float(loss(labels[..., None], probabilities)) == pytest.approx(expected, rel=1e-5)
    clone = SegmentationLoss.from_config(loss.get_config())
    assert float(clone(labels, probabilities)) == pytest.approx(expected, rel=1e-5)


def test_unknown_diagnosis_counts_as_lesion_on_a_2x2_map():
    # background 0.7 right; unknown lesion: P(benign) + P(malignant) = 0.6; malignant 0.5;
    # the fourth pixel is ignored whatever its probabilities.
    probabilities = np.array([[[0.7, 0.2, 0.1], [0.4, 0.3, 0.3]],
                              [[0.2, 0.3, 0.5], [0.0, 0.0, 1.0]]])
    labels = np.array([[0, 3], [2, 255]])
    # Three class weights: the unknown label takes the mean of benign and malignant (2.5).
    expected = (1 * -np.log(0.7) + 2.5 * -np.log(0.6) + 3 * -np.log(0.5)) / (1 + 2.5 + 3)
    assert expected == pytest.approx(0.571259, abs=1e-6)
    assert weighted_cross_entropy(probabilities, labels, class_weights=[1, 2, 3]) == \
        pytest.approx(expected)
    explicit = (-np.log(0.7) + 4 * -np.log(0.6) + 3 * -np.log(0.5)) / 8
    assert weighted_cross_entropy(probabilities, labels, class_weights=[1, 2, 3, 4]) == \
        pytest.approx(explicit)
    # Moving mass between benign and malignant on the unknown pixel changes nothing ...
    swapped = probabilities.copy()
    swapped[0, 1] = [0.4, 0.6, 0.0]
    assert weighted_cross_entropy(swapped, labels, class_weights=[1, 2, 3]) == \
        pytest.approx(expected)
    # ... nor the Dice term, which leaves unknown pixels out; the Keras loss agrees.
    assert soft_dice_loss(swapped, labels) == pytest.approx(soft_dice_loss(probabilities, labels))
    loss = SegmentationLoss([1, 2, 3], dice_weight=0.5)
    batch = probabilities[None].astype(np.float32)
    assert float(loss(labels[None].astype(np.uint8), batch)) == pytest.approx(
        segmentation_loss(probabilities, labels, class_weights=[1, 2, 3], dice_weight=0.5),
        rel=1e-5)


def test_class_weights_count_the_unknown_label():
    labels = [np.array([[0, 0, 0, 3, 255]])]
    np.testing.assert_allclose(class_weights_from_labels(labels, num_classes=4, power=1.0),
                               class_weights_from_counts([3, 0, 0, 1], power=1.0))
