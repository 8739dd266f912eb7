"""Tests of detection on photos: heatmap padding and tiling, overlay, files, CLI."""
import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

import lesiontrack
from lesiontrack.cli import main
from lesiontrack.detection.detect import (detect, detect_files, draw_overlay, heatmap_image,
                                load_detector, predict_heatmap)
from synth.io import write_image


@pytest.fixture(scope="module")
def model(tiny_detector_path):
    yield load_detector(tiny_detector_path)
    keras.backend.clear_session()


@pytest.fixture
def photo(rng):
    return rng.integers(0, 256, (45, 61, 3), dtype=np.uint8)


def test_heatmap_padding_and_tiling_agree(model, photo):
    probabilities = predict_heatmap(model, photo)
    assert probabilities.shape == (45, 61, 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    # Tiles with enough context reproduce the whole-photo result away from tile seams.
    tiled = predict_heatmap(model, photo, max_pixels=100, tile=32, margin=32)
    np.testing.assert_allclose(tiled, probabilities, atol=1e-4)


def test_detect_api_and_overlay(model, photo):
    lesions, probabilities = detect(photo, model=model, threshold=0.0, return_heatmap=True,
                                    min_score=0.0, min_contrast=None)
    # Threshold 0 makes the whole photo one lesion (with no skin around it: no contrast).
    assert len(lesions) == 1 and lesions[0]["bbox"] == [0, 0, 61, 45]
    assert lesions[0]["contrast"] is None
    # The least score drops it: the random model's mean P(lesion) is below 1.
    assert detect(photo, model=model, threshold=0.0, min_score=1.0, min_contrast=None) == []
    assert lesiontrack.detect(photo, model=model, threshold=1.01) == []
    overlay = draw_overlay(photo, [{"id": 1, "bbox": [5, 5, 20, 10], "malignancy": 1.0}])
    assert overlay.shape == photo.shape and overlay.dtype == np.uint8
    assert tuple(overlay[4, 10]) == (230, 0, 0)
    assert not np.array_equal(overlay, photo) and photo is not overlay
    picture = heatmap_image(probabilities)
    assert picture.shape == photo.shape and picture.dtype == np.uint8


def test_detect_files_json_and_coco(model, photo, tmp_path, tiny_detector_path):
    write_image(tmp_path / "a.png", photo)
    write_image(tmp_path / "b.jpg", photo[:40, :40])
    out = tmp_path / "out"
    detect_files([tmp_path / "a.png", tmp_path / "b.jpg"], out, weights=tiny_detector_path,
                 threshold=0.0, min_score=0.0, min_contrast=None)
    record = json.loads((out / "a.json").read_text())
    assert record["size"] == [61, 45] and len(record["lesions"]) == 1
    assert record["min_score"] == 0.0 and record["min_contrast"] is None
    assert record["weights"]["path"].endswith("tiny.keras")
    assert {p.name for p in out.iterdir()} == {
        "a.json", "a_overlay.png", "a_heatmap.png", "b.json", "b_overlay.png", "b_heatmap.png"}
    coco_dir = tmp_path / "coco"
    detect_files([tmp_path / "a.png"], coco_dir, weights=tiny_detector_path, threshold=0.0,
                 min_score=0.0, min_contrast=None, format="coco")
    coco = json.loads((coco_dir / "annotations.json").read_text())
    assert coco["images"][0]["width"] == 61 and len(coco["annotations"]) == 1
    assert coco["annotations"][0]["bbox"] == [0, 0, 61, 45]


def test_cli_detect(photo, tmp_path, tiny_detector_path):
    write_image(tmp_path / "skin.png", photo)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["detect", str(tmp_path / "skin.png"), "--out", str(out),
                                       "--weights", str(tiny_detector_path)])
    assert result.exit_code == 0, result.output
    assert (out / "skin.json").is_file() and (out / "skin_overlay.png").is_file()


def test_cli_corrupt_photo_names_it_and_writes_nothing(photo, tmp_path, tiny_detector_path):
    write_image(tmp_path / "good.png", photo)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["detect", str(tmp_path / "good.png"),
                                       str(tmp_path / "broken.jpg"), "--out", str(out),
                                       "--weights", str(tiny_detector_path)])
    assert result.exit_code == 1
    assert "broken.jpg" in result.output and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


def test_cli_bad_weights(photo, tmp_path):
    write_image(tmp_path / "skin.png", photo)
    (tmp_path / "w.keras").write_bytes(b"junk")
    result = CliRunner().invoke(main, ["detect", str(tmp_path / "skin.png"), "--out",
                                       str(tmp_path / "out"), "--weights", str(tmp_path / "w.keras")])
    assert result.exit_code == 1 and "w.keras" in result.output


def test_visible_lesions_measure_contrast_and_drop_faint_ones():
    from lesiontrack.detection.detect import visible_lesions
    from lesiontrack.detection.proposals import describe_lesions

    image = np.full((80, 120, 3), (200, 160, 140), np.uint8)
    yy, xx = np.mgrid[:80, :120]
    instances = np.zeros((80, 120), np.uint16)
    dark = (yy - 40) ** 2 + (xx - 30) ** 2 <= 36
    faint = (yy - 40) ** 2 + (xx - 90) ** 2 <= 36
    image[dark] = (90, 60, 50)
    image[faint] = (197, 158, 139)
    instances[dark], instances[faint] = 1, 2
    probabilities = np.zeros((80, 120, 3), np.float32)
    probabilities[..., 0] = 1.0
    lesions = describe_lesions(probabilities, instances)
    measured = visible_lesions(image, lesions, instances)
    contrast = {lesion["id"]: lesion["contrast"] for lesion in measured}
    assert contrast[1] > 20 and contrast[2] < 2
    kept = visible_lesions(image, lesions, instances, min_contrast=5.0)
    assert [lesion["id"] for lesion in kept] == [1]
    # A lesion with no skin around it (all non-skin) has no contrast and is kept.
    kept = visible_lesions(image, lesions, instances, skin=np.zeros((80, 120), bool),
                           min_contrast=5.0)
    assert [lesion["contrast"] for lesion in kept] == [None, None]
