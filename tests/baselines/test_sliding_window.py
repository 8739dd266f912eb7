"""Sliding-window baseline: features, NMS, heatmap, training and detection on disks."""

import numpy as np
import pytest
from click.testing import CliRunner

from lesiontrack.baselines import sliding_window as sw
from lesiontrack.cli import main
from lesiontrack.metrics import match_detections
from synth.io import InputError, read_image, read_manifest


@pytest.fixture(scope="module")
def trained(disk_dataset):
    return sw.train_sliding_window(disk_dataset, rng=np.random.default_rng(0))


def _random_model(rng):
    dims = len(sw.FEATURE_NAMES)
    return sw.SlidingWindowModel(mean=np.zeros(dims), scale=np.full(dims, 10.0),
                                 weights=rng.normal(size=(2 * dims, 3)), bias=np.zeros(3))


def test_window_grid_reaches_the_edges():
    xs, ys = sw.window_grid(50, 40, window_size=16, stride_frac=0.5)
    assert xs.tolist() == [0, 8, 16, 24]
    assert ys.tolist() == [0, 8, 16, 24, 32, 34]
    xs, ys = sw.window_grid(10, 40, window_size=16)
    assert ys.size == 0


def test_feature_maps_match_brute_force(rng):
    image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    size = 8
    maps = sw.window_feature_maps(image, window_size=size)
    assert maps.shape == (40, 48, len(sw.FEATURE_NAMES)) and maps.dtype == np.float32
    lab = sw._lab(image)
    row, col = 20, 24  # window rows/cols 16..23 and 20..27; ring window 12..27, 16..31
    inner = lab[row - 4:row + 4, col - 4:col + 4].reshape(-1, 3)
    outer = lab[row - 8:row + 8, col - 8:col + 8].reshape(-1, 3)
    ring_mean = (outer.sum(0) - inner.sum(0)) / (len(outer) - len(inner))
    np.testing.assert_allclose(maps[row, col, 0:3], inner.mean(0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(maps[row, col, 3:6], inner.std(0), rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(maps[row, col, 6:9], inner.mean(0) - ring_mean, atol=1e-2)
    assert maps[row, col, -1] == pytest.approx(np.log(size))


def test_extract_windows_shapes(rng):
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    boxes, features = sw.extract_windows(image, window_sizes=(16, 32), stride_frac=0.5)
    assert len(boxes) == 9 * 7 + 4 * 3 and features.shape == (len(boxes), len(sw.FEATURE_NAMES))
    assert (boxes[:, 0] + boxes[:, 2] <= 80).all() and (boxes[:, 1] + boxes[:, 3] <= 64).all()


def test_non_max_suppression_table():
    boxes = [[0, 0, 10, 10], [1, 1, 10, 10], [30, 30, 10, 10], [2, 2, 4, 4], [8, 0, 10, 10]]
    scores = [0.9, 0.8, 0.7, 0.95, 0.6]
    # Box 3 (best) holds the centres of boxes 0 and 1; box 4 overlaps none of the kept ones.
    keep = sw.non_max_suppression(boxes, scores, iou=0.3)
    assert keep.tolist() == [3, 2, 4]
    keep = sw.non_max_suppression([[0, 0, 10, 10], [1, 1, 10, 10], [30, 30, 10, 10]],
                                  [0.9, 0.8, 0.7], iou=0.3)
    assert keep.tolist() == [0, 2]
    keep = sw.non_max_suppression([[0, 0, 10, 10], [6, 0, 10, 10]], [0.5, 0.9], iou=0.3)
    assert keep.tolist() == [1, 0]  # IoU 4/16 and centres outside each other
    assert sw.non_max_suppression(np.zeros((0, 4)), np.zeros(0)).size == 0


def test_heatmap_is_max_over_covering_windows(rng):
    image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    model = _random_model(rng)
    heatmap = sw.sliding_window_heatmap(image, model, window_sizes=(16,), stride_frac=0.5)
    boxes, probabilities = sw.classify_windows(image, model, window_sizes=(16,))
    lesion = probabilities[:, 1] + probabilities[:, 2]
    expected = np.zeros((40, 48))
    for (x, y, w, h), score in zip(boxes, lesion):
        expected[y:y + h, x:x + w] = np.maximum(expected[y:y + h, x:x + w], score)
    np.testing.assert_allclose(heatmap, expected, atol=1e-6)


def test_detections_have_the_lesion_record_format(rng):
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    lesions = sw.detect_sliding_window(image, _random_model(rng), threshold=0.0)
    assert lesions
    scores = [lesion["score"] for lesion in lesions]
    assert scores == sorted(scores, reverse=True)
    for number, lesion in enumerate(lesions, start=1):
        assert set(lesion) == {"id", "bbox", "centroid", "area_px", "score", "malignancy",
                               "label"}
        assert lesion["id"] == number and 0 <= lesion["malignancy"] <= 1
        assert lesion["label"] == ("malignant" if lesion["malignancy"] >= 0.5 else "benign")


def test_trained_baseline_finds_the_disks(disk_dataset, trained):
    records = [r for r in read_manifest(disk_dataset) if r["split"] == "test"]
    found, total, false_positives = 0, 0, 0
    malignancy = {True: [], False: []}
    for record in records:
        image = read_image(disk_dataset / record["image"])
        lesions = sw.detect_sliding_window(image, trained, threshold=0.5)
        boxes = [lesion["bbox"] for lesion in record["lesions"]]
        pred_to_true, true_to_pred, duplicate = match_detections(
            [d["centroid"] for d in lesions], boxes, scores=[d["score"] for d in lesions])
        found += int((true_to_pred >= 0).sum())
        total += len(boxes)
        false_positives += int(((pred_to_true < 0) & ~duplicate).sum())
        for lesion, index in zip(record["lesions"], true_to_pred):
            if index >= 0:
                malignancy[lesion["malignant"]].append(lesions[index]["malignancy"])
        heatmap = sw.sliding_window_heatmap(image, trained)
        assert heatmap.shape == image.shape[:2]
        assert heatmap.dtype == np.float32 and 0 <= heatmap.min() <= heatmap.max() <= 1
    assert found == total
    assert false_positives <= 2 * len(records)
    assert min(malignancy[True]) > max(malignancy[False])


def test_save_load_roundtrip_and_bad_files(tmp_path, trained):
    path = sw.save_sliding_window(trained, tmp_path / "baseline.npz")
    loaded = sw.load_sliding_window(path)
    np.testing.assert_array_equal(loaded.weights, trained.weights)
    assert loaded.window_sizes == trained.window_sizes
    assert not list(tmp_path.glob(".tmp-*"))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="garbage.npz"):
        sw.load_sliding_window(garbage)
    with pytest.raises(InputError, match="no such file"):
        sw.load_sliding_window(tmp_path / "missing.npz")
    other = tmp_path / "other.npz"
    np.savez(other, something=np.zeros(3))
    with pytest.raises(InputError, match="other.npz"):
        sw.load_sliding_window(other)


def test_train_rejects_empty_split(disk_dataset):
    with pytest.raises(InputError, match="no samples"):
        sw.train_sliding_window(disk_dataset, split="nope", rng=np.random.default_rng(0))


def test_cli_train_baseline(disk_dataset, tmp_path):
    out = tmp_path / "baseline.npz"
    result = CliRunner().invoke(main, ["train", "baseline", str(disk_dataset), "--out", str(out),
                                       "--seed", "1", "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert sw.load_sliding_window(out).weights.shape == (2 * len(sw.FEATURE_NAMES), 3)
    result = CliRunner().invoke(main, ["train", "baseline", str(tmp_path / "none"), "--out",
                                       str(out)])
    assert result.exit_code == 1 and "Error:" in result.output
