"""Plot helpers write readable PNGs atomically."""
import numpy as np
import pytest

from lesiontrack import plots
from synth.io import InputError, read_image


def _check_png(path):
    image = read_image(path)
    assert image.shape[0] > 50 and image.shape[1] > 50
    assert not list(path.parent.glob(".tmp-*"))


def test_plot_froc_roc_pck(tmp_path):
    fp, sens = np.array([0.0, 0.5, 2.0]), np.array([0.2, 0.5, 0.9])
    _check_png(plots.plot_froc({"a": (fp, sens), "b": (np.zeros(0), np.zeros(0))},
                               tmp_path / "froc.png"))
    _check_png(plots.plot_roc({"a": ([0, 0.5, 1], [0, 0.8, 1], 0.9),
                               "b": ([0, 1], [0, 1], float("nan"))}, tmp_path / "roc.png",
                              "ROC"))
    _check_png(plots.plot_pck({"a": ([0.01, 0.05, 0.1], [0.1, 0.6, 0.9])}, tmp_path / "pck.png"))
    _check_png(plots.plot_roc({}, tmp_path / "empty.png", "nothing"))


def test_plot_training_curves(tmp_path):
    csv_path = tmp_path / "history.csv"
    csv_path.write_text("epoch,accuracy,loss,val_accuracy,val_loss\n"
                        "0,0.5,1.2,0.4,1.3\n1,0.7,0.8,0.6,0.9\n2,0.8,0.6,0.7,0.7\n")
    _check_png(plots.plot_training_curves(csv_path, tmp_path / "sub" / "curves.png"))
    with pytest.raises(InputError, match="missing.csv"):
        plots.plot_training_curves(tmp_path / "missing.csv", tmp_path / "x.png")
    (tmp_path / "empty.csv").write_text("epoch,loss\n")
    with pytest.raises(InputError, match="no rows"):
        plots.plot_training_curves(tmp_path / "empty.csv", tmp_path / "x.png")
