"""Tests of detector training: metric tables, one tiny epoch, resuming, the CLI."""
import csv

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY_FILTERS
from lesiontrack.detection.train import (evaluate_detector, real_lesion_recall,
                                         train_detector)
from lesiontrack.metrics import class_iou, confusion_matrix, histogram_auc
from synth.io import read_json


def test_confusion_and_iou_table():
    labels = np.array([0, 0, 1, 1, 2, 255])
    predictions = np.array([0, 1, 1, 1, 0, 2])
    confusion = confusion_matrix(labels, predictions)
    np.testing.assert_array_equal(confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    np.testing.assert_allclose(class_iou(confusion), [1 / 3, 2 / 3, 0.0])
    assert np.isnan(class_iou(np.zeros((3, 3)))).all()


@pytest.mark.parametrize("positive, negative, expected", [
    ([0, 0, 2], [2, 0, 0], 1.0),      # perfect separation
    ([2, 0, 0], [0, 0, 2], 0.0),      # inverted
    ([1, 1, 0], [1, 1, 0], 0.5),      # identical distributions
    ([0, 1, 1], [1, 1, 0], 0.875),    # (1 * (1 + 0.5) + 1 * 2) / 4: ties count one half
])
def test_histogram_auc_table(positive, negative, expected):
    assert histogram_auc(positive, negative) == pytest.approx(expected)


def test_train_resume_and_logs(tiny_dataset, tmp_path):
    keras.backend.clear_session()
    out = tmp_path / "model.keras"
    options = dict(steps=1, batch=2, crop=32, seed=0, filters=TINY_FILTERS, val_limit=1,
                   learning_rate=1e-3, decay=(0, 2), final_learning_rate=1e-4,
                   class_weight_power=0.25)
    history = train_detector(tiny_dataset, out, epochs=1, **options)
    assert len(history) == 1
    row = history[0]
    for key in ("loss", "val_loss", "val_sens_1fp", "val_auc", "val_lesion_iou"):
        assert np.isfinite(row[key]), key
    assert 0.0 <= row["val_sens_1fp"] <= 1.0
    assert out.is_file() and out.with_suffix(".png").is_file()
    assert (tmp_path / "model.last.keras").is_file()
    state = read_json(tmp_path / "model.state.json")
    assert state["epoch"] == 1 and state["best_epoch"] == 1
    assert len(state["config"]["class_weights"]) == 4   # labels 0-3
    assert state["config"]["class_weight_power"] == 0.25
    assert state["monitor"] == "sens_1fp"
    assert state["config"]["decay"] == [0, 2] and state["config"]["final_learning_rate"] == 1e-4
    assert row["lr"] == pytest.approx(1e-3)   # no epoch done yet: the start of the decay
    # Resume: only the second epoch runs, the log keeps both.
    history = train_detector(tiny_dataset, out, epochs=2, **options)
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[1]["lr"] == pytest.approx(5.5e-4)   # half-way down the cosine
    with open(out.with_suffix(".csv"), newline="") as handle:
        assert [int(float(r["epoch"])) for r in csv.DictReader(handle)] == [1, 2]
    assert read_json(tmp_path / "model.state.json")["epoch"] == 2
    keras.backend.clear_session()


def test_cli_bad_dataset_is_one_line_error(tmp_path):
    from lesiontrack.cli import main

    result = CliRunner().invoke(main, ["train", "detector", str(tmp_path / "none"),
                                       "--out", str(tmp_path / "m.keras")])
    assert result.exit_code == 1
    assert "none" in result.output and "Traceback" not in result.output


def darkness_detector():
    """A fixed 'detector': P(lesion) = sigmoid((120 - mean RGB) / 4), split evenly by class."""
    inputs = keras.Input((None, None, 3))
    lesion = keras.layers.Lambda(
        lambda x: keras.ops.sigmoid((120.0 - keras.ops.mean(x, axis=-1, keepdims=True)) / 4.0))(inputs)
    outputs = keras.layers.Concatenate()([1.0 - lesion, lesion / 2, lesion / 2])
    return keras.Model(inputs, outputs)


def test_evaluate_detector_finds_every_dark_disc(tiny_dataset):
    from lesiontrack.detection.data import split_records
    from lesiontrack.detection.losses import segmentation_loss

    keras.backend.clear_session()
    records = split_records(tiny_dataset, "train")
    figures = evaluate_detector(darkness_detector(), tiny_dataset, records, stride=1,
                                loss=lambda p, y: segmentation_loss(p, y))
    # The 4 training photos hold 6 discs (one benign each, a malignant one on odd photos),
    # all found, nothing else proposed.
    assert figures["sens_1fp"] == 1.0 and figures["sensitivity"] == 1.0
    assert figures["fp_per_image"] == 0.0
    assert figures["lesion_iou"] > 0.9 and figures["auc"] > 0.99
    keras.backend.clear_session()


def test_real_lesion_recall_counts_clear_lesions_only(tmp_path):
    from synth.io import write_image

    keras.backend.clear_session()
    rng = np.random.default_rng(0)
    photo = np.clip(rng.normal([200, 160, 140], 8, (96, 128, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:96, :128]
    photo[(xx - 40) ** 2 + (yy - 50) ** 2 <= 36] = (60, 40, 35)
    write_image(tmp_path / "tile.jpg", photo)
    write_image(tmp_path / "other.jpg", photo)
    (tmp_path / "lesions.csv").write_text(
        "tile,x,y,radius_px,label\n"
        "tile,40,50,6,lesion\n"        # the dark disc: found
        "tile,100,20,5,lesion\n"       # nothing there: missed
        "tile,100,70,5,ambiguous\n")   # not counted
    figures = real_lesion_recall(darkness_detector(), tmp_path, ["tile"])
    assert figures == {"real_recall": 0.5, "real_detections": 1.0}
    keras.backend.clear_session()


@pytest.mark.parametrize("flip, expected", [
    (False, {"accuracy": 1.0, "iou_benign": 1.0, "iou_malignant": 1.0, "mean_iou": 1.0,
             "lesion_iou": 1.0, "auc": 1.0}),
    # Background and lesions swapped: every labelled pixel wrong, lesion ranked below skin.
    (True, {"accuracy": 0.0, "iou_benign": 0.0, "iou_malignant": 0.0, "mean_iou": 0.0,
            "lesion_iou": 0.0, "auc": 0.0}),
])
def test_evaluate_segmentation_known_answers(flip, expected):
    from lesiontrack.detection.train import evaluate_segmentation

    keras.backend.clear_session()
    # A "detector" whose probabilities are the photo / 255: the photo spells out the answer.
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Rescaling(1.0 / 255.0)(inputs))
    labels = np.zeros((8, 8), np.uint8)
    labels[:3, :3], labels[5:, 5:], labels[0, 7] = 1, 2, 255
    classes = np.where(labels == 255, 0, labels)
    if flip:  # background -> malignant, lesions -> background
        classes = np.where(classes == 0, 2, 0)
    image = (np.eye(3, dtype=np.float32)[classes] * 255.0)[None]
    figures = evaluate_segmentation(model, [(image, labels)], loss=lambda p, y: float(p.sum()))
    assert figures["loss"] == pytest.approx(64.0)  # one-hot probabilities sum to one per pixel
    for key, value in expected.items():
        assert figures[key] == pytest.approx(value), key
    keras.backend.clear_session()


@pytest.mark.parametrize("value", ["1,2", "1,1,1,x", "1,1,1,-1"])
def test_cli_bad_class_weights_are_refused(tmp_path, value):
    from lesiontrack.cli import main

    result = CliRunner().invoke(main, ["train", "detector", str(tmp_path), "--out",
                                       str(tmp_path / "m.keras"), "--class-weights", value])
    assert result.exit_code == 2
    assert "--class-weights" in result.output and "Traceback" not in result.output
