"""Tests of detector training: metric tables, one tiny epoch, resuming, the CLI."""
import csv

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY_FILTERS
from lesiontrack.detection.train import train_detector
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
    options = dict(steps=1, batch=2, crop=32, seed=0, filters=TINY_FILTERS, val_limit=1)
    history = train_detector(tiny_dataset, out, epochs=1, **options)
    assert len(history) == 1
    row = history[0]
    for key in ("loss", "val_loss", "val_accuracy", "val_mean_iou", "val_auc"):
        assert np.isfinite(row[key]) or key == "val_mean_iou"
    assert out.is_file() and out.with_suffix(".png").is_file()
    assert (tmp_path / "model.last.keras").is_file()
    state = read_json(tmp_path / "model.state.json")
    assert state["epoch"] == 1 and state["best_epoch"] == 1
    assert len(state["config"]["class_weights"]) == 3
    # Resume: only the second epoch runs, the log keeps both.
    history = train_detector(tiny_dataset, out, epochs=2, **options)
    assert [row["epoch"] for row in history] == [1, 2]
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
