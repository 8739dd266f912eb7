"""Forward-backward flow confidence: consistent affine flows, a corrupted region, matching."""
import numpy as np
import pytest

from lesiontrack.tracking.consistency import (RELIABLE, forward_backward_confidence,
                                              region_confidence)
from lesiontrack.tracking.match import match_lesions

SIZE = (60, 80)  # H, W
# x1 = A x0 + t: a small rotation + zoom and a shift.
MATRIX = np.array([[1.02, -0.05], [0.05, 1.02]])
SHIFT = np.array([3.0, -2.0])


def _affine_flows():
    """Forward flow of x -> A x + t on the grid, and the backward flow of its inverse."""
    height, width = SIZE
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    points = np.stack([xs, ys], -1)
    forward = points @ MATRIX.T + SHIFT - points
    backward = (points - SHIFT) @ np.linalg.inv(MATRIX).T - points
    return forward.astype(np.float32), backward.astype(np.float32)


def _inside(forward):
    height, width = forward.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    tx, ty = xs + forward[..., 0], ys + forward[..., 1]
    return (tx >= 0) & (tx <= width - 1) & (ty >= 0) & (ty <= height - 1)


def test_consistent_affine_flows_are_confident():
    forward, backward = _affine_flows()
    confidence = forward_backward_confidence(forward, backward)
    inside = _inside(forward)
    assert confidence.shape == SIZE and confidence.dtype == np.float32
    assert inside.mean() > 0.8
    # Bilinear sampling of an affine field is exact: confidence 1 up to rounding.
    assert confidence[inside].min() > 0.999
    assert np.all(confidence[~inside] == 0)


def test_corrupted_region_has_low_confidence():
    forward, backward = _affine_flows()
    corrupted = forward.copy()
    corrupted[20:35, 30:50] += np.array([12.0, -9.0], np.float32)  # a wrong match, 15 px
    confidence = forward_backward_confidence(corrupted, backward)
    # r = 225 / (0.01 (|f|^2 + |b|^2) + 0.5) is large: confidence essentially zero.
    assert confidence[22:33, 32:48].max() < 1e-3
    assert confidence[45:55, 5:25].min() > 0.999


def test_small_discrepancy_follows_the_formula():
    forward = np.zeros((10, 10, 2), np.float32)
    backward = np.zeros((10, 10, 2), np.float32)
    backward[..., 0] = 0.5  # |f + b^|^2 = 0.25; |f|^2 + |b^|^2 = 0.25
    confidence = forward_backward_confidence(forward, backward)
    assert confidence[5, 5] == pytest.approx(np.exp(-0.25 / (0.01 * 0.25 + 0.5)), rel=1e-5)


def test_bad_shape_raises():
    with pytest.raises(ValueError, match="forward"):
        forward_backward_confidence(np.zeros((4, 4)), np.zeros((4, 4, 2)))


def test_region_confidence_is_the_box_mean():
    confidence = np.zeros((10, 10))
    confidence[:, 5:] = 1.0
    values = region_confidence(confidence, [[3, 0, 4, 10], [6, 2, 2, 2], [20, 20, 3, 3]])
    np.testing.assert_allclose(values, [0.5, 1.0, 0.0])


def _lesion(identifier, cx, cy, radius=3):
    return {"id": identifier, "bbox": [cx - radius, cy - radius, 2 * radius + 1, 2 * radius + 1],
            "centroid": [float(cx), float(cy)], "area_px": float(np.pi * radius ** 2)}


def test_match_marks_lesions_whose_flow_is_inconsistent():
    forward, backward = _affine_flows()
    corrupted = forward.copy()
    corrupted[20:35, 30:50] += np.array([3.0, -2.0], np.float32)
    image = np.full(SIZE + (3,), 200, np.uint8)
    lesions0 = [_lesion(1, 15, 50), _lesion(2, 40, 27)]
    # t1 lesions where the true affine map puts them.
    lesions1 = []
    for lesion in lesions0:
        x1, y1 = MATRIX @ np.asarray(lesion["centroid"]) + SHIFT
        lesions1.append(_lesion(lesion["id"] + 10, x1, y1))
    result = match_lesions(image, image, flow=corrupted, backward_flow=backward,
                           lesions0=lesions0, lesions1=lesions1)
    by_id = {m["id0"]: m for m in result["matches"]}
    assert by_id[1]["flow_reliable"] is True and by_id[1]["flow_confidence"] > 0.99
    assert by_id[2]["flow_reliable"] is False and by_id[2]["flow_confidence"] < RELIABLE
    assert by_id[2]["confidence"] < by_id[1]["confidence"]
    # Without a backward flow nothing is known about consistency.
    plain = match_lesions(image, image, flow=forward, lesions0=lesions0, lesions1=lesions1)
    assert all(m["flow_confidence"] is None for m in plain["matches"])
