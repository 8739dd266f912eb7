"""Figures: what is drawn (lines, labels, limits) and PNGs written atomically."""
import numpy as np
import pytest

from lesiontrack import plots
from synth.io import InputError, read_image


def _check_png(path, figure_inches):
    """A readable PNG about the figure's size at plots.DPI (tight bounding box)."""
    image = read_image(path)
    width, height = (plots.DPI * side for side in figure_inches)
    assert 0.7 * height <= image.shape[0] <= 1.1 * height
    assert 0.7 * width <= image.shape[1] <= 1.1 * width
    assert not list(path.parent.glob(".tmp-*"))
    return image


def _lines(axes):
    return {line.get_label(): (line.get_xdata(), line.get_ydata()) for line in axes.get_lines()}


def test_froc_figure_draws_the_best_sensitivity_as_steps():
    fp, sens = np.array([2.0, 0.0, 0.5]), np.array([0.9, 0.2, 0.1])
    figure = plots.froc_figure({"a": (fp, sens), "none": (np.zeros(0), np.zeros(0))}, max_fp=8)
    axes = figure.axes[0]
    x, y = _lines(axes)["a"]
    # Sorted by FP rate from the origin; sensitivity never falls (0.1 after 0.2 stays 0.2).
    np.testing.assert_array_equal(x, [0.0, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(y, [0.0, 0.2, 0.2, 0.9])
    np.testing.assert_array_equal(_lines(axes)["none"][1], [0.0])
    assert axes.get_xlim() == (0, 8) and axes.get_ylim() == (0, 1.02)
    assert axes.get_xlabel() == "false positives per image" and axes.get_title() == "FROC"
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["a", "none"]
    assert plots.froc_figure({"a": (np.array([12.0]), np.array([1.0]))}).axes[0].get_xlim() == (0, 12)


def test_roc_figure_legend_carries_the_area():
    figure = plots.roc_figure({"a": ([0, 0.5, 1], [0, 0.8, 1], 0.9),
                               "b": ([0, 1], [0, 1], float("nan"))}, title="ROC")
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["a (AUC 0.900)", "b"]
    chance = axes.get_lines()[0]
    np.testing.assert_array_equal(chance.get_xdata(), [0, 1])
    np.testing.assert_array_equal(_lines(axes)["a (AUC 0.900)"][1], [0, 0.8, 1])
    assert plots.roc_figure({}).axes[0].get_legend() is None


def test_pck_figure():
    figure = plots.pck_figure({"net": ([0.01, 0.05, 0.1], [0.1, 0.6, 0.9])}, title="pairs")
    axes = figure.axes[0]
    np.testing.assert_array_equal(_lines(axes)["net"][1], [0.1, 0.6, 0.9])
    assert axes.get_title() == "pairs" and axes.get_ylabel() == "PCK"


def test_plot_functions_write_pngs(tmp_path):
    fp, sens = np.array([0.0, 0.5, 2.0]), np.array([0.2, 0.5, 0.9])
    assert plots.plot_froc({"a": (fp, sens)}, tmp_path / "froc.png") == tmp_path / "froc.png"
    image = _check_png(tmp_path / "froc.png", (5.5, 4.2))
    assert (image < 128).any() and (image > 250).any()  # axes and text on a white ground
    _check_png(plots.plot_roc({"a": ([0, 1], [0, 1], 0.5)}, tmp_path / "roc.png"), (4.8, 4.5))
    _check_png(plots.plot_pck({"a": ([0.01, 0.1], [0.5, 1.0])}, tmp_path / "pck.png"), (5.5, 4.2))


def test_training_curves_panels(tmp_path):
    columns = {"epoch": np.array([1, 2, 3.0]), "loss": np.array([1.2, 0.8, 0.6]),
               "train_seconds": np.array([10, 11, 12.0]), "val_loss": np.array([1.3, 0.9, 0.7]),
               "val_mean_iou": np.array([0.1, 0.3, 0.4])}
    assert plots.metric_names(columns) == ["loss", "mean_iou"]
    figure = plots.training_curves_figure(columns)
    visible = [axis for axis in figure.axes if axis.get_visible()]
    assert [axis.get_title() for axis in visible] == ["loss", "mean_iou"]
    loss = _lines(visible[0])
    np.testing.assert_array_equal(loss["train"][1], [1.2, 0.8, 0.6])
    np.testing.assert_array_equal(loss["validation"][1], [1.3, 0.9, 0.7])
    assert set(_lines(visible[1])) == {"validation"}
    with pytest.raises(ValueError, match="no metric"):
        plots.training_curves_figure({"epoch": np.array([1.0])})


def test_plot_training_curves_from_csv(tmp_path):
    csv_path = tmp_path / "history.csv"
    csv_path.write_text("epoch,accuracy,loss,val_accuracy,val_loss\n"
                        "0,0.5,1.2,0.4,1.3\n1,0.7,0.8,0.6,0.9\n2,0.8,0.6,0.7,0.7\n")
    _check_png(plots.plot_training_curves(csv_path, tmp_path / "sub" / "curves.png"), (8.4, 3.2))
    with pytest.raises(InputError, match="missing.csv"):
        plots.plot_training_curves(tmp_path / "missing.csv", tmp_path / "x.png")
    (tmp_path / "empty.csv").write_text("epoch,loss\n")
    with pytest.raises(InputError, match="no rows"):
        plots.plot_training_curves(tmp_path / "empty.csv", tmp_path / "x.png")
    (tmp_path / "epochs.csv").write_text("epoch\n1\n")
    with pytest.raises(InputError, match="no metric columns"):
        plots.plot_training_curves(tmp_path / "epochs.csv", tmp_path / "x.png")


def test_pck_sets_figure_one_panel_per_set(tmp_path):
    sets = {"synthetic": {"net": ([0.01, 0.1], [0.4, 0.9]), "dis": ([0.01, 0.1], [0.8, 0.95])},
            "stereo": {"net": ([0.01, 0.1], [0.6, 1.0])}}
    figure = plots.pck_sets_figure(sets, log_axis=True)
    assert [axes.get_title() for axes in figure.axes] == ["synthetic", "stereo"]
    np.testing.assert_array_equal(_lines(figure.axes[0])["dis"][1], [0.8, 0.95])
    assert set(_lines(figure.axes[1])) == {"net"}
    assert all(axes.get_xscale() == "log" for axes in figure.axes)
    assert figure.axes[0].get_xlim() == (0.01, 0.1)
    assert figure.axes[0].get_lines()[0].get_marker() == "."  # two tolerances: dots
    dense = plots.pck_figure({"a": (np.linspace(0.01, 0.1, 60), np.linspace(0, 1, 60))})
    assert dense.axes[0].get_lines()[0].get_marker() in (None, "None", "")
    assert plots.pck_figure(sets["stereo"]).axes[0].get_xscale() == "linear"
    _check_png(plots.plot_pck_sets(sets, tmp_path / "sets.png"), (11.0, 4.2))
