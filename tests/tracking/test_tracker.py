"""Tracker loss, training data, predict_flow and the `lesiontrack train tracker` command."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import finish_dataset
from lesiontrack.tracking import data as tracking_data
from lesiontrack.tracking.data import pack_target
from lesiontrack.tracking.losses import robust_epe

# --------------------------------------------------------------------------- loss tables

# (predicted flow, true flow, valid, alpha, epsilon, expected loss)
ROBUST_EPE_CASES = [
    ([[3.0, 4.0]], [[0.0, 0.0]], [1], 0.5, 0.0, 5.0),                 # Charbonnier = EPE
    ([[3.0, 4.0]], [[0.0, 0.0]], [1], 0.45, 0.0, 25.0 ** 0.45),
    ([[0.0, 0.0]], [[0.0, 0.0]], [1], 0.5, 1e-3, 1e-3),                # floor at epsilon
    ([[1.0, 0.0], [0.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]], [1, 1], 0.5, 0.0, 1.5),
    ([[1.0, 0.0], [0.0, 200.0]], [[0.0, 0.0], [0.0, 0.0]], [1, 0], 0.5, 0.0, 1.0),  # masked
    ([[1.0, 0.0]], [[0.0, 0.0]], [0], 0.5, 0.0, 0.0),                  # nothing valid
    ([[6.0, 8.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [1, 1], 1.0, 0.0, 50.0),  # squared
]


@pytest.mark.parametrize("pred, true, valid, alpha, epsilon, expected", ROBUST_EPE_CASES)
def test_robust_epe_table(pred, true, valid, alpha, epsilon, expected):
    assert robust_epe(np.array(pred), np.array(true), np.array(valid), alpha=alpha,
                      epsilon=epsilon) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("pred, true, valid, alpha, epsilon, expected", ROBUST_EPE_CASES)
def test_keras_loss_matches_numpy(pred, true, valid, alpha, epsilon, expected):
    from lesiontrack.tracking.losses import RobustEPELoss

    target = pack_target(np.array(true)[None, None], np.array(valid)[None, None])
    loss = RobustEPELoss(alpha=alpha, epsilon=epsilon)(target, np.array(pred, np.float32)[None, None])
    assert float(loss) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_epe_metric_accumulates():
    from lesiontrack.tracking.losses import EndPointError

    metric = EndPointError()
    target = pack_target(np.zeros((1, 2, 1, 2)), np.array([[[1], [0]]]).reshape(1, 2, 1))
    metric.update_state(target, np.array([[[[3.0, 4.0]], [[100.0, 0.0]]]], np.float32))
    metric.update_state(target, np.array([[[[0.0, 1.0]], [[100.0, 0.0]]]], np.float32))
    assert float(metric.result()) == pytest.approx(3.0)


# --------------------------------------------------------------------------- data


def _constant_pair(size=64, flow=(3.0, -2.0)):
    rng = np.random.default_rng(0)
    image0 = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    image1 = image0.copy()
    field = np.tile(np.array(flow, np.float32), (size, size, 1))
    return image0, image1, field, np.ones((size, size), bool)


def test_augment_flips_negate_the_flow_component():
    pair = _constant_pair(flow=(3.0, -2.0))
    seen = set()
    for seed in range(12):
        _, _, flow, valid = tracking_data.augment_pair(
            *pair, rng=np.random.default_rng(seed), crop=32, scale_range=(1.0, 1.0), gain_sigma=0)
        values = flow[valid]
        assert np.all(values == values[0])
        seen.add(tuple(values[0]))
    assert seen == {(3.0, -2.0), (-3.0, -2.0), (3.0, 2.0), (-3.0, 2.0)}


def test_augment_crop_same_place_and_targets_inside():
    image0, _, flow, valid = _constant_pair(size=64, flow=(5.0, 0.0))
    # image1 is image0 moved 5 px right: image0[y, x] == image1[y, x + 5].
    image1 = np.roll(image0, 5, axis=1)
    out0, out1, out_flow, out_valid = tracking_data.augment_pair(
        image0, image1, flow, valid, rng=np.random.default_rng(1), crop=32,
        scale_range=(1.0, 1.0), flip=False, gain_sigma=0)
    assert out0.shape == (32, 32, 3) and out_flow.shape == (32, 32, 2)
    np.testing.assert_array_equal(out0[:, :27], out1[:, 5:])
    # Targets beyond the crop's right edge are invalid.
    assert out_valid[:, :27].all() and not out_valid[:, 27:].any()


def test_resize_scales_the_flow():
    pair = _constant_pair(size=64, flow=(4.0, -2.0))
    image0, _, flow, valid = tracking_data.resize_pair(*pair, 0.5)
    assert image0.shape == (32, 32, 3)
    np.testing.assert_allclose(flow[valid], np.tile([2.0, -1.0], (valid.sum(), 1)), atol=1e-5)


def test_examples_are_seeded(pair_dataset):
    records = tracking_data.pair_records(pair_dataset, "train")
    first = next(tracking_data.iterate_examples(pair_dataset, records, seed=5, crop=32))
    again = next(tracking_data.iterate_examples(pair_dataset, records, seed=5, crop=32))
    other = next(tracking_data.iterate_examples(pair_dataset, records, seed=6, crop=32))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    assert first[2].shape == (32, 32, 3) and set(np.unique(first[2][..., 2])) <= {0.0, 1.0}


def test_refine_examples_are_residuals_to_dis():
    from lesiontrack.tracking.flow import estimate_flow
    from synth.pairs.warp import warp_backward

    image0 = _smooth(80, 80)
    image1 = np.roll(image0, (-2, 4), axis=(0, 1))  # image0[y, x] == image1[y - 2, x + 4]
    flow = np.tile(np.array([4.0, -2.0], np.float32), (80, 80, 1))
    valid = np.ones((80, 80), bool)
    # A crop of the whole photo, no flips or gain: the window is the photo.
    out0, out1, residual, out_valid = tracking_data.augment_pair(
        image0, image1, flow, valid, rng=np.random.default_rng(0), crop=80,
        scale_range=(1.0, 1.0), flip=False, gain_sigma=0, coarse=True)
    dis = estimate_flow(image0, image1, method="dis")
    np.testing.assert_array_equal(out0, image0)
    np.testing.assert_array_equal(out1, warp_backward(image1, dis))
    np.testing.assert_allclose(residual, flow - dis, atol=1e-5)
    _, _, _, plain_valid = tracking_data.augment_pair(
        image0, image1, flow, valid, rng=np.random.default_rng(0), crop=80,
        scale_range=(1.0, 1.0), flip=False, gain_sigma=0)
    np.testing.assert_array_equal(out_valid, plain_valid)
    assert np.median(np.abs(residual[out_valid])) < 0.5  # DIS finds this translation


def test_synthetic_pair_is_consistent():
    from synth.pairs.warp import warp_backward

    image0 = _smooth(64, 64)
    image1, flow, valid = tracking_data.synthetic_pair(image0, rng=np.random.default_rng(2),
                                                       strength_range=(0.5, 0.5))
    assert image1.shape == image0.shape and flow.shape == (64, 64, 2) and valid.dtype == bool
    back = warp_backward(image1, flow).astype(float)
    assert np.abs(back - image0)[valid].mean() < 25  # illumination changes, geometry agrees


# --------------------------------------------------------------------------- fixtures


def _smooth(height, width, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(height, width, 3)).astype(np.float32)
    texture = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return np.clip(128 + 60 * texture / texture.std(), 0, 255).astype(np.uint8)


def write_pair_dataset(root, *, count=4, size=64, shift=(3, -2)):
    """Pairs of smooth textures translated by ``shift``; the last sample is "val"."""
    from synth import io

    root = Path(root)
    lines = []
    for index in range(count):
        sample_id = f"{index:06d}"
        big = _smooth(size + 16, size + 16, seed=index)
        dx, dy = shift
        image0 = big[8:8 + size, 8:8 + size]
        image1 = big[8 - dy:8 - dy + size, 8 - dx:8 - dx + size]
        paths = io.sample_paths(sample_id, pair=True)
        zeros = np.zeros((size, size), np.uint8)
        io.write_image(root / paths["image"], image0)
        io.write_image(root / paths["labels"], zeros)
        io.write_image(root / paths["instances"], zeros.astype(np.uint16))
        io.write_image(root / paths["pair"]["image"], image1)
        io.write_image(root / paths["pair"]["labels"], zeros)
        io.write_image(root / paths["pair"]["instances"], zeros.astype(np.uint16))
        io.write_flo(root / paths["pair"]["flow"],
                     np.tile(np.array(shift, np.float32), (size, size, 1)))
        io.write_image(root / paths["pair"]["valid"], zeros + 255)
        lines.append(json.dumps({"id": sample_id, "index": index,
                                 "split": "val" if index == count - 1 else "train",
                                 "size": [size, size], **paths, "lesions": []}))
    return finish_dataset(root, lines)


@pytest.fixture(scope="module")
def pair_dataset(tmp_path_factory):
    return write_pair_dataset(tmp_path_factory.mktemp("pairs"))


@pytest.fixture(scope="module")
def tiny_tracker():
    import keras

    from lesiontrack.tracking.model import build_siamese

    keras.backend.clear_session()
    yield build_siamese((4, 8, 8, 8), atrous_width=8, head_widths=(8,))
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def tiny_refine_tracker():
    import keras

    from lesiontrack.tracking.model import build_siamese

    keras.backend.clear_session()
    yield build_siamese((4, 8, 8, 8), variant="refine", atrous_width=8, head_widths=(8,))
    keras.backend.clear_session()


# --------------------------------------------------------------------------- predict_flow


def test_untrained_refine_tracker_returns_dis(tiny_refine_tracker, shifted_pair):
    from lesiontrack.tracking.flow import estimate_flow
    from lesiontrack.tracking.infer import predict_flow

    image0, image1 = shifted_pair(size=64, shift=(5, -3))
    flow = predict_flow(image0, image1, weights=tiny_refine_tracker)
    np.testing.assert_allclose(flow, estimate_flow(image0, image1, method="dis"), atol=1e-4)
    assert np.abs(np.median(flow.reshape(-1, 2), 0) - [5, -3]).max() < 0.5


def test_refine_tracker_one_training_step(tiny_refine_tracker, pair_dataset):
    import keras

    from lesiontrack.tracking.losses import RobustEPELoss

    model = keras.models.clone_model(tiny_refine_tracker)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=RobustEPELoss())
    records = tracking_data.pair_records(pair_dataset, "train")
    inputs, target = next(iter(tracking_data.make_dataset(pair_dataset, records, batch_size=2,
                                                          crop=32, coarse=True)))
    target = np.asarray(target)
    # The untrained refine model answers a zero residual, so the first loss is known.
    expected = robust_epe(np.zeros(target.shape[:3] + (2,)), target[..., :2], target[..., 2])
    before = [w.copy() for w in model.get_layer("residual").get_weights()]
    logs = model.train_on_batch(inputs, target, return_dict=True)
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)
    after = model.get_layer("residual").get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_predict_flow_any_size(tiny_tracker):
    from lesiontrack.tracking.infer import predict_flow

    image0, image1 = _smooth(50, 70, seed=1), _smooth(50, 70, seed=2)
    flow = predict_flow(image0, image1, weights=tiny_tracker)
    assert flow.shape == (50, 70, 2) and flow.dtype == np.float32
    # A larger second photo: flow still on image0's grid; downscaled working size.
    flow = predict_flow(image0, _smooth(100, 140, seed=2), weights=tiny_tracker, max_diagonal=40)
    assert flow.shape == (50, 70, 2) and np.isfinite(flow).all()


def test_predict_flow_maps_into_image1_pixels(tiny_tracker, monkeypatch):
    from lesiontrack.tracking import infer as tracker

    # With a network that answers zero flow, the mapping into a 2x larger image1 is p -> 2p.
    monkeypatch.setattr(tracker, "_predictor",
                        lambda model: lambda a, b: np.zeros(a.shape[:3] + (2,), np.float32))
    image0, image1 = _smooth(16, 16), _smooth(32, 32)
    flow = tracker.predict_flow(image0, image1, weights=tiny_tracker)
    # Pixel centre x of the 16 px photo is at 2 x + 0.5 in the 32 px one (as cv2.resize).
    np.testing.assert_allclose(flow[3, 5], [5 + 0.5, 3 + 0.5])
    columns, rows = np.meshgrid(np.arange(16), np.arange(16))
    np.testing.assert_allclose(flow, np.stack([columns + 0.5, rows + 0.5], -1))
    # estimate_flow(method="net") resizes image1 first and maps the flow the same way.
    from lesiontrack.tracking.flow import estimate_flow

    np.testing.assert_allclose(estimate_flow(image0, image1, method="net", weights=tiny_tracker),
                               flow, atol=1e-6)
    # A working size below the photo's: the flow of a zero network stays the same map.
    small = tracker.predict_flow(image0, image1, weights=tiny_tracker, max_diagonal=12)
    np.testing.assert_allclose(small, flow, atol=1e-5)


def test_predict_flow_rejects_bad_input(tiny_tracker):
    from lesiontrack.tracking.infer import predict_flow

    with pytest.raises(ValueError, match=r"image0 must be RGB of shape \(H, W, 3\)"):
        predict_flow(np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.uint8), weights=tiny_tracker)
    with pytest.raises(ValueError, match="image1 must be uint8"):
        predict_flow(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32),
                     weights=tiny_tracker)


# --------------------------------------------------------------------------- training command


def test_train_tracker_command_and_resume(pair_dataset, tiny_detector_path, tmp_path):
    from click.testing import CliRunner

    from lesiontrack.cli import main

    out = tmp_path / "run" / "tracker.keras"
    arguments = ["train", "tracker", str(pair_dataset), "--init", str(tiny_detector_path),
                 "--out", str(out), "--steps", "1", "--batch", "2", "--crop", "32",
                 "--val-limit", "1"]
    result = CliRunner().invoke(main, arguments + ["--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "val EPE" in result.output
    for suffix in (".keras", ".last.keras", ".state.json", ".csv", ".png"):
        assert (tmp_path / "run" / f"tracker{suffix}").is_file(), suffix
    state = json.loads((tmp_path / "run" / "tracker.state.json").read_text())
    assert state["epoch"] == 1 and state["monitor"] == "epe"
    # Initialised from a detector: its full-resolution block is kept fixed by default.
    assert state["config"]["frozen"] == ["conv1_1", "conv1_1_bn", "conv1_2", "conv1_2_bn"]
    # Resuming a finished run reloads the last checkpoint (custom layers, loss, metric).
    result = CliRunner().invoke(main, arguments + ["--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "run" / "tracker.csv").read_text().strip().splitlines()) == 2


def test_train_tracker_command_bad_crop(pair_dataset, tmp_path):
    from click.testing import CliRunner

    from lesiontrack.cli import main

    result = CliRunner().invoke(main, ["train", "tracker", str(pair_dataset), "--out",
                                       str(tmp_path / "t.keras"), "--crop", "40"])
    assert result.exit_code == 1 and "multiple of the model stride" in result.output


def test_working_size_keeps_the_aspect_and_only_shrinks():
    from lesiontrack.tracking.infer import working_size

    assert working_size(512, 512, 362.0) == (256, 256)
    width, height = working_size(1094, 894, 362.0)
    assert abs(math.hypot(width, height) - 362) < 1.5 and abs(width / height - 1094 / 894) < 0.01
    assert working_size(200, 100, 362.0) == (200, 100)
    assert working_size(1094, 894, None) == (1094, 894)
