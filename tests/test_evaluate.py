"""Detection evaluation on tiny disk datasets, with a stand-in detector and the baseline."""
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from lesiontrack import evaluate
from lesiontrack.baselines.sliding_window import save_sliding_window, train_sliding_window
from lesiontrack.cli import main
from synth.io import InputError, read_image, read_manifest, write_image, write_json

OUTPUTS = ("froc.png", "roc_malignant.png", "roc_pixel.png", "metrics.json", "summary.md")


def _oracle_runner(weights, *, threshold=0.05):
    """A stand-in FCN: dark blobs are lesions; the darker, the more malignant."""

    def run(image):
        grey = image.mean(axis=2)
        count, _, stats, centroids = cv2.connectedComponentsWithStats(
            (grey < 150).astype(np.uint8))
        lesions = []
        for index in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[index])
            if area < 20:  # single dark noise pixels
                continue
            darkness = float(grey[y:y + h, x:x + w].min())
            malignancy = float(np.clip((150 - darkness) / 100, 0, 1))
            lesions.append({"id": index, "bbox": [x, y, w, h],
                            "centroid": centroids[index].tolist(), "area_px": area,
                            "score": 0.9, "malignancy": malignancy,
                            "label": "malignant" if malignancy >= 0.5 else "benign"})
        return lesions, np.clip((200 - grey) / 150, 0, 1)

    return run


@pytest.fixture(scope="module")
def baseline_path(disk_dataset, tmp_path_factory):
    model = train_sliding_window(disk_dataset, rng=np.random.default_rng(0))
    return save_sliding_window(model, tmp_path_factory.mktemp("baseline") / "baseline.npz")


def test_evaluate_both_methods(disk_dataset, baseline_path, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate, "_fcn_runner", _oracle_runner)
    report = evaluate.evaluate_detection(disk_dataset, tmp_path / "out", weights="fake",
                                         baseline=baseline_path)
    for name in OUTPUTS:
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert not list((tmp_path / "out").glob(".tmp-*"))
    stored = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert stored["counts"] == report["counts"]
    test_lesions = sum(len(r["lesions"]) for r in read_manifest(disk_dataset)
                       if r["split"] == "test")
    assert report["counts"]["images"] == 3 and report["counts"]["lesions"] == test_lesions
    oracle = stored["methods"][evaluate.FCN_NAME]
    assert oracle["sensitivity_at_fp"]["0.5"] == 1.0
    assert oracle["roc_malignant"]["auc"] == 1.0
    assert oracle["roc_pixel"]["auc"] > 0.99
    assert oracle["operating_point"]["fp_per_image"] == 0.0
    assert set(oracle["per_diagnosis"]) == {"NEV", "MEL"}
    assert all(v["sensitivity"] == 1.0 for v in oracle["per_diagnosis"].values())
    baseline = stored["methods"][evaluate.BASELINE_NAME]
    assert baseline["sensitivity_at_fp"]["4"] >= 0.8
    assert 0.5 < baseline["roc_pixel"]["auc"] <= 1.0
    for method in stored["methods"].values():
        fp = np.asarray(method["froc"]["fp_per_image"])
        sens = np.asarray(method["froc"]["sensitivity"])
        assert (np.diff(fp) >= 0).all() and (np.diff(sens) >= 0).all()
        assert ((0 <= sens) & (sens <= 1)).all()
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert evaluate.FCN_NAME in summary and evaluate.BASELINE_NAME in summary


def test_evaluate_random_detector_gives_sane_figures(disk_dataset, tmp_path, monkeypatch):
    def random_runner(weights, *, threshold=0.05):
        rng = np.random.default_rng(3)

        def run(image):
            height, width = image.shape[:2]
            lesions = [{"id": i + 1, "bbox": [0, 0, 1, 1],
                        "centroid": [float(rng.uniform(0, width)), float(rng.uniform(0, height))],
                        "area_px": 1, "score": float(rng.uniform(threshold, 1)),
                        "malignancy": float(rng.uniform()), "label": "benign"}
                       for i in range(20)]
            return lesions, rng.uniform(size=(height, width))

        return run

    monkeypatch.setattr(evaluate, "_fcn_runner", random_runner)
    report = evaluate.evaluate_detection(disk_dataset, tmp_path, weights="fake", limit=2)
    method = report["methods"][evaluate.FCN_NAME]
    assert report["counts"]["images"] == 2
    assert method["num_detections"] == 40
    assert 0.3 < method["roc_pixel"]["auc"] < 0.7
    assert method["sensitivity_at_fp"]["0.5"] <= method["sensitivity_at_fp"]["4"] <= 1


def _write_coco_folder(disk_dataset, root):
    """The disk test images as a user's photo folder with a COCO annotations.json."""
    images, annotations = [], []
    for record in read_manifest(disk_dataset):
        if record["split"] != "test":
            continue
        name = f"photo_{record['id']}.jpg"
        write_image(root / "images" / name, read_image(disk_dataset / record["image"]))
        images.append({"id": record["index"], "file_name": name, "width": 128, "height": 128})
        for lesion in record["lesions"]:
            annotations.append({"id": len(annotations) + 1, "image_id": record["index"],
                                "bbox": lesion["bbox"], "category_id": lesion["label"],
                                "attributes": {"diagnosis": lesion["diagnosis"]}})
    write_json(root / "annotations.json", {
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "benign"}, {"id": 2, "name": "malignant"}]})
    return root


def test_coco_folder_reads_malignancy_and_diagnosis(disk_dataset, tmp_path):
    root = _write_coco_folder(disk_dataset, tmp_path / "photos")
    items = evaluate.read_detection_truth(root)
    records = [r for r in read_manifest(disk_dataset) if r["split"] == "test"]
    assert len(items) == len(records)
    assert items[0].labels is None
    assert items[0].malignant == [lesion["malignant"] for lesion in records[0]["lesions"]]
    assert items[0].diagnosis == [lesion["diagnosis"] for lesion in records[0]["lesions"]]


def test_coco_malignant_attribute(tmp_path):
    write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    write_json(tmp_path / "annotations.json", {
        "images": [{"id": 7, "file_name": "a.png"}],
        "annotations": [{"image_id": 7, "bbox": [1, 1, 2, 2], "category_id": 1,
                         "malignant": 1},
                        {"image_id": 7, "bbox": [4, 4, 2, 2], "category_id": 1,
                         "attributes": {"malignant": "false"}},
                        {"image_id": 7, "bbox": [5, 1, 2, 2], "category_id": 1}],
        "categories": [{"id": 1, "name": "lesion"}]})
    (item,) = evaluate.read_detection_truth(tmp_path)
    assert item.malignant == [True, False, None]


def test_bad_sources(tmp_path):
    with pytest.raises(InputError, match="neither"):
        evaluate.read_detection_truth(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        evaluate.read_detection_truth(tmp_path / "missing")
    write_json(tmp_path / "annotations.json", {"images": [{"id": 1, "file_name": "x.jpg"}]})
    with pytest.raises(InputError, match="x.jpg"):
        evaluate.read_detection_truth(tmp_path)
    with pytest.raises(ValueError):
        evaluate.evaluate_detection(tmp_path, tmp_path / "out", weights=None)


def test_cli_evaluate_detection_on_coco_folder(disk_dataset, baseline_path, tmp_path):
    root = _write_coco_folder(disk_dataset, tmp_path / "photos")
    result = CliRunner().invoke(main, ["evaluate", "detection", str(root), "--weights", "none",
                                       "--baseline", str(baseline_path), "--out",
                                       str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "sliding window" in result.output
    stored = json.loads((tmp_path / "out" / "metrics.json").read_text())
    method = stored["methods"][evaluate.BASELINE_NAME]
    assert method["roc_pixel"]["auc"] is None  # no label maps in a COCO folder
    assert stored["counts"]["malignant"] + stored["counts"]["benign"] == stored["counts"]["lesions"]
    for name in OUTPUTS:
        assert (tmp_path / "out" / name).is_file()
    result = CliRunner().invoke(main, ["evaluate", "detection", str(root), "--weights", "none",
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code != 0


def test_coco_folder_adds_ap_and_real_photo_figures(disk_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate, "_fcn_runner", _oracle_runner)
    root = _write_coco_folder(disk_dataset, tmp_path / "photos")
    report = evaluate.evaluate_detection(root, tmp_path / "out", weights="fake")
    oracle = report["methods"][evaluate.FCN_NAME]
    # The oracle's boxes are the disks' own: AP 1 at every IoU threshold.
    assert oracle["coco_ap"]["ap50"] == pytest.approx(1.0)
    assert oracle["coco_ap"]["ap"] == pytest.approx(1.0)
    photos = report["real_photos"]["methods"][evaluate.FCN_NAME]
    assert report["real_photos"]["threshold"] == 0.5
    assert photos["recall_clear"] == 1.0 and photos["precision"] == 1.0
    assert photos["clear"] == report["counts"]["lesions"] and len(photos["photos"]) == 3
    assert len(list((tmp_path / "out").glob("*_overlay.png"))) == 3
    assert (tmp_path / "out" / "photos.csv").is_file()
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "AP@0.5" in summary and "recall clear" in summary


def test_coco_crowd_annotations_are_uncertain(tmp_path):
    write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    write_json(tmp_path / "annotations.json", {
        "images": [{"id": 7, "file_name": "a.png"}],
        "annotations": [{"image_id": 7, "bbox": [1, 1, 2, 2], "category_id": 1},
                        {"image_id": 7, "bbox": [4, 4, 2, 2], "category_id": 1, "iscrowd": 1},
                        {"image_id": 7, "bbox": [5, 1, 2, 2], "category_id": 2}],
        "categories": [{"id": 1, "name": "lesion"}, {"id": 2, "name": "ambiguous"}]})
    (item,) = evaluate.read_detection_truth(tmp_path)
    assert item.boxes.tolist() == [[1, 1, 2, 2]]
    assert item.ignore_boxes.tolist() == [[4, 4, 2, 2], [5, 1, 2, 2]]
