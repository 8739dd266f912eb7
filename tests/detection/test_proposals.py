"""Heatmap to lesions on synthetic heatmaps with known answers."""
import numpy as np
import pytest

from lesiontrack.detection.proposals import heatmap_to_lesions, segment_lesions


def heatmap(p_lesion, malignant_share=0.0):
    p_lesion = np.clip(p_lesion, 0, 1).astype(np.float32)
    share = np.broadcast_to(np.asarray(malignant_share, np.float32), p_lesion.shape)
    return np.stack([1 - p_lesion, p_lesion * (1 - share), p_lesion * share], -1)


def gaussian(shape, cx, cy, sigma):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))


def test_exact_boxes_and_scores():
    p = np.zeros((40, 50), np.float32)
    p[5:15, 10:30] = 0.9          # benign rectangle
    p[25:35, 35:45] = 0.8         # malignant square
    share = np.zeros_like(p)
    share[25:35, 35:45] = 0.75
    lesions, instances = heatmap_to_lesions(heatmap(p, share), min_area=10, return_instances=True)
    assert [lesion["bbox"] for lesion in lesions] == [[10, 5, 20, 10], [35, 25, 10, 10]]
    assert [lesion["area_px"] for lesion in lesions] == [200, 100]
    assert lesions[0]["centroid"] == [19.5, 9.5]
    assert lesions[0]["score"] == pytest.approx(0.9)
    assert lesions[0]["label"] == "benign" and lesions[0]["malignancy"] == 0.0
    assert lesions[1]["label"] == "malignant"
    assert lesions[1]["malignancy"] == pytest.approx(0.75)
    assert [lesion["id"] for lesion in lesions] == [1, 2]
    assert instances.dtype == np.uint16
    assert set(np.unique(instances)) == {0, 1, 2}
    assert (instances == 1).sum() == 200


def test_touching_blobs_are_split_in_two():
    p = np.maximum(gaussian((40, 60), 20, 20, 8), gaussian((40, 60), 38, 20, 8))
    mask = p >= 0.5
    from scipy import ndimage
    assert ndimage.label(mask)[1] == 1          # one connected region above threshold
    lesions = heatmap_to_lesions(heatmap(p), min_area=5)
    assert len(lesions) == 2
    xs = sorted(lesion["centroid"][0] for lesion in lesions)
    assert xs[0] == pytest.approx(20, abs=1.5) and xs[1] == pytest.approx(38, abs=1.5)
    assert len(heatmap_to_lesions(heatmap(p), min_area=5, split_depth=None)) == 1


def test_flat_plateau_is_not_split():
    p = np.zeros((30, 30), np.float32)
    p[5:25, 5:25] = 1.0
    assert len(heatmap_to_lesions(heatmap(p))) == 1


def test_specks_and_weak_regions_removed():
    p = np.zeros((30, 30), np.float32)
    p[3, 3] = 1.0                   # one-pixel speck
    p[10:13, 20:23] = 1.0           # 9 px, below min_area
    p[15:25, 5:15] = 0.4            # below threshold
    assert heatmap_to_lesions(heatmap(p), min_area=16) == []
    assert segment_lesions(heatmap(p)).max() == 0
    assert len(heatmap_to_lesions(heatmap(p), threshold=0.3, min_area=16)) == 1


def test_bad_shape():
    with pytest.raises(ValueError):
        heatmap_to_lesions(np.zeros((4, 4, 2), np.float32))
