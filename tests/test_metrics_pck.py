"""Tracking metrics: PCK, end-point error, keypoints from a flow, lesion matching."""
import numpy as np
import pytest

from lesiontrack.metrics import (
    carry_points, correct_fraction, endpoint_error, endpoint_errors, instance_centroids,
    lesion_match_accuracy, pck_curve, sample_keypoints_from_flow)

TRUE = np.array([[0, 0], [10, 10], [20, 20], [30, 30]], float)
# errors 0, 5, 10, 20 px
PRED = TRUE + np.array([[0, 0], [3, 4], [6, 8], [0, 20]], float)


@pytest.mark.parametrize("alpha, diagonal, expected", [
    (0.0, 100, 0.25),    # only the exact point
    (0.05, 100, 0.5),    # 5 px: boundary included
    (0.0999, 100, 0.5),
    (0.1, 100, 0.75),
    (0.2, 100, 1.0),
    (0.01, 1000, 0.75),  # 10 px tolerance at a larger diagonal
])
def test_pck_table(alpha, diagonal, expected):
    assert pck_curve(PRED, TRUE, alphas=[alpha], diagonal=diagonal)[0] == expected


def test_pck_per_point_diagonal_and_curve():
    # Tolerances 10, 10, 5, 40 px for errors 0, 5, 10, 20: the third point misses.
    assert pck_curve(PRED, TRUE, alphas=[0.1], diagonal=[100, 100, 50, 400])[0] == 0.75
    np.testing.assert_array_equal(
        pck_curve(PRED, TRUE, alphas=[0.0, 0.05, 0.1, 0.2], diagonal=100),
        [0.25, 0.5, 0.75, 1.0])
    assert np.isnan(pck_curve(np.zeros((0, 2)), np.zeros((0, 2)), alphas=[0.1], diagonal=10)).all()
    with pytest.raises(ValueError):
        pck_curve(PRED[:3], TRUE, alphas=[0.1], diagonal=100)
    with pytest.raises(ValueError, match="diagonal"):
        pck_curve(PRED, TRUE, alphas=[0.1], diagonal=[100, 100])


def test_correct_fraction_counts_the_boundary():
    # The PCK rule is error <= alpha * L: an error of exactly 5 px at 0.05 x 100 counts.
    np.testing.assert_array_equal(correct_fraction([5.0, 5.0 + 1e-9], alphas=[0.05], diagonal=100),
                                  [0.5])
    assert np.isnan(correct_fraction([], alphas=[0.1], diagonal=1)).all()


def test_endpoint_errors_per_pixel():
    flow = np.zeros((10, 10, 2))
    true = np.zeros((10, 10, 2))
    flow[0, :, 0] = 3.0  # one row off by 3 px
    errors = endpoint_errors(flow, true)
    assert errors.shape == (10, 10)
    np.testing.assert_array_equal(errors[0], 3.0)
    np.testing.assert_array_equal(errors[1:], 0.0)
    assert endpoint_error(flow, true) == pytest.approx(0.3)
    # Diagonal of 10 x 10 is 14.14: 3 px is within 0.25 x but not 0.2 x of it.
    np.testing.assert_allclose(correct_fraction(errors.ravel(), alphas=[0.2, 0.25],
                                                diagonal=np.hypot(10, 10)), [0.9, 1.0])
    with pytest.raises(ValueError):
        endpoint_errors(flow, true[..., :1])


def test_endpoint_error_table():
    flow = np.zeros((2, 2, 2))
    true = np.zeros((2, 2, 2))
    true[0, 0] = (3, 4)       # error 5
    true[0, 1] = (0, 1)       # error 1
    true[1, 1] = np.nan       # never counted
    assert endpoint_error(flow, true) == pytest.approx(2.0)     # (5 + 1 + 0) / 3
    valid = np.array([[True, False], [True, True]])
    assert endpoint_error(flow, true, valid) == pytest.approx(2.5)  # (5 + 0) / 2
    assert np.isnan(endpoint_error(flow, true, np.zeros((2, 2), bool)))
    with pytest.raises(ValueError):
        endpoint_error(flow, true[:1])


def test_carry_points_bilinear():
    flow = np.zeros((3, 4, 2))
    flow[..., 0] = np.arange(4)[None, :]        # dx = x
    flow[..., 1] = 10 * np.arange(3)[:, None]   # dy = 10 y
    points = np.array([[0.5, 0.0], [3.0, 2.0], [1.25, 1.5]])
    np.testing.assert_allclose(carry_points(flow, points),
                               [[1.0, 0.0], [6.0, 22.0], [2.5, 16.5]])


def test_instance_centroids_and_lesion_matching():
    instances = np.zeros((10, 10), np.uint16)
    instances[1:3, 1:3] = 1          # centre (1.5, 1.5)
    instances[6, 7] = 4              # centre (7, 6)
    centres = instance_centroids(instances)
    assert sorted(centres) == [1, 4]
    np.testing.assert_allclose(centres[1], [1.5, 1.5])
    np.testing.assert_allclose(centres[4], [7, 6])
    carried = np.array([[2.0, 2.0], [2.0, 3.0]])   # both land nearest lesion 1
    assert lesion_match_accuracy(carried, [1, 4], centres) == 0.5
    assert np.isnan(lesion_match_accuracy(np.zeros((0, 2)), [], centres))


def test_sample_keypoints_from_flow():
    height, width = 20, 30
    flow = np.zeros((height, width, 2), np.float32)
    flow[..., 0] = 2.0
    flow[..., 1] = -1.0
    valid = np.ones((height, width), bool)
    valid[:, 25:] = False
    instances = np.zeros((height, width), np.uint16)
    instances[4:7, 4:7] = 3          # centre (5, 5), valid
    instances[10, 27] = 5            # centre outside the valid area: dropped
    keypoints = sample_keypoints_from_flow(flow, valid, instances,
                                           rng=np.random.default_rng(0), n_skin=50)
    assert keypoints["kind"].tolist() == ["lesion"] + ["skin"] * 50
    assert keypoints["instance"].tolist() == [3] + [0] * 50
    np.testing.assert_allclose(keypoints["points0"][0], [5, 5])
    np.testing.assert_allclose(keypoints["points1"] - keypoints["points0"],
                               np.tile([2.0, -1.0], (51, 1)))
    skin = keypoints["points0"][1:].astype(int)
    assert valid[skin[:, 1], skin[:, 0]].all() and (instances[skin[:, 1], skin[:, 0]] == 0).all()
    assert len(np.unique(skin, axis=0)) == 50
    again = sample_keypoints_from_flow(flow, valid, instances, rng=np.random.default_rng(0),
                                       n_skin=50)
    np.testing.assert_array_equal(again["points0"], keypoints["points0"])
