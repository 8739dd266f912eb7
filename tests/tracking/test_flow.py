"""estimate_flow: dispatch, conventions, input checks."""
import numpy as np
import pytest

from lesiontrack.tracking import flow as flow_module
from lesiontrack.tracking.flow import METHODS, estimate_flow, flow_to_color


@pytest.mark.parametrize("method", ["siftflow", "dsp", "deepflow", "dis"])
def test_methods_recover_translation(shifted_pair, method):
    image0, image1 = shifted_pair(size=96, shift=(6, -4))
    flow = estimate_flow(image0, image1, method=method)
    assert flow.shape == (96, 96, 2) and flow.dtype == np.float32
    error = np.hypot(*(flow[16:-16, 16:-16] - np.array([6, -4], np.float32)).reshape(-1, 2).T)
    assert np.median(error) <= 1.0


@pytest.mark.parametrize("method", ["siftflow", "dsp", "deepflow", "dis", "zero"])
def test_identical_images_give_zero_flow(shifted_pair, method):
    image0, _ = shifted_pair(size=64)
    flow = estimate_flow(image0, image0, method=method)
    assert np.median(np.abs(flow)) <= 0.25 and np.abs(flow[8:-8, 8:-8]).max() <= 1.0


def test_image1_of_another_size_maps_into_its_pixels(shifted_pair):
    image0, _ = shifted_pair(size=64)
    image1 = np.repeat(np.repeat(image0, 2, axis=0), 2, axis=1)  # same scene, twice the size
    flow = estimate_flow(image0, image1, method="zero")
    columns, rows = np.meshgrid(np.arange(64), np.arange(64))
    # Pixel x0 covers pixels 2 x0 and 2 x0 + 1 of image1: its centre is at 2 x0 + 0.5
    # (pixel-centre convention of cv2.resize), so dx = x0 + 0.5.
    np.testing.assert_allclose(flow[..., 0], columns + 0.5)
    np.testing.assert_allclose(flow[..., 1], rows + 0.5)
    # The true flow of that pair carries every pixel onto the pixels of image1 it covers.
    carried = np.stack([columns + flow[..., 0], rows + flow[..., 1]], -1)
    np.testing.assert_array_equal(image1[np.floor(carried[..., 1]).astype(int),
                                         np.floor(carried[..., 0]).astype(int)], image0)


def test_net_dispatches_to_the_tracker(shifted_pair, monkeypatch):
    from lesiontrack.tracking import infer as tracker

    calls = {}

    def fake_predict_flow(image0, image1, *, weights="default"):
        calls["weights"] = weights
        return np.ones(image0.shape[:2] + (2,), np.float32)

    monkeypatch.setattr(tracker, "predict_flow", fake_predict_flow)
    image0, image1 = shifted_pair(size=64)
    flow = estimate_flow(image0, image1, method="net", weights="some.keras")
    assert calls == {"weights": "some.keras"} and np.all(flow == 1)


@pytest.mark.parametrize("bad", [
    np.zeros((32, 32, 3), np.float32),       # not uint8
    np.zeros((32, 32), np.uint8),            # grey
    np.zeros((32, 32, 4), np.uint8),         # RGBA
    np.zeros((4, 4, 3), np.uint8),           # too small
])
def test_invalid_images_raise(bad):
    good = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError):
        estimate_flow(bad, good, method="zero")
    with pytest.raises(ValueError):
        estimate_flow(good, bad, method="zero")


def test_unknown_method_raises_naming_the_choices():
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="unknown flow method 'raft'; choose one of "
                                         "net, siftflow, dsp, deepflow, dis, zero$"):
        estimate_flow(image, image, method="raft")


def test_every_method_is_dispatched_and_offered_by_the_cli():
    from lesiontrack.cli import flow_command

    # Every listed method has an implementation and the command offers exactly those.
    assert list(flow_module._METHODS) == list(METHODS)
    method = next(p for p in flow_command.params if p.name == "method")
    assert tuple(method.type.choices) == METHODS


def test_zero_method_is_zero(shifted_pair):
    image0, image1 = shifted_pair(size=32, shift=(3, 1))
    np.testing.assert_array_equal(estimate_flow(image0, image1, method="zero"), 0.0)


def test_flow_to_color():
    flow = np.zeros((4, 4, 2), np.float32)
    flow[0, 0] = (3, 0)
    colour = flow_to_color(flow)
    assert colour.shape == (4, 4, 3) and colour.dtype == np.uint8
    assert colour[1, 1].tolist() == [255, 255, 255] and colour[0, 0].tolist() != [255, 255, 255]


def test_flow_command_writes_flo_npy_png(shifted_pair, tmp_path):
    from click.testing import CliRunner

    from lesiontrack.cli import main
    from synth.io import read_flo, write_image

    image0, image1 = shifted_pair(size=64, shift=(3, 0))
    write_image(tmp_path / "t0.png", image0)
    write_image(tmp_path / "t1.png", image1)
    result = CliRunner().invoke(main, ["flow", str(tmp_path / "t0.png"), str(tmp_path / "t1.png"),
                                       "--method", "dis", "--out", str(tmp_path / "f.flo"),
                                       "--npy", "--png", str(tmp_path / "f.png")])
    assert result.exit_code == 0, result.output
    flow = read_flo(tmp_path / "f.flo")
    assert flow.shape == (64, 64, 2)
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), flow)
    assert (tmp_path / "f.png").is_file()
    assert abs(np.median(flow[16:-16, 16:-16, 0]) - 3) <= 0.5
    missing = CliRunner().invoke(main, ["flow", str(tmp_path / "t0.png"), str(tmp_path / "no.png"),
                                        "--method", "zero", "--out", str(tmp_path / "g.flo")])
    assert missing.exit_code == 1 and "no.png" in missing.output
