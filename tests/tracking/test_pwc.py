"""The "pwc" tracker: shapes, correlation, convex upsampling, multi-scale loss, one step."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from lesiontrack.tracking import model as siamese  # noqa: E402
from lesiontrack.tracking import data as tracking_data  # noqa: E402
from lesiontrack.tracking import pwc  # noqa: E402
from lesiontrack.tracking.losses import PWC_LOSS_WEIGHTS, LevelRobustLoss  # noqa: E402
from lesiontrack.tracking.train import compile_pwc  # noqa: E402

TINY = dict(filters=(4, 8, 8, 8), extra_filters=(8, 8),
            decoder_widths={32: (8, 8), 16: (8, 8), 8: (8, 8), 4: (8, 8)},
            context_widths=(8, 8, 8, 8, 8))


@pytest.fixture(scope="module")
def tiny_model():
    keras.backend.clear_session()
    model = pwc.build_pwc(**TINY)
    yield model
    keras.backend.clear_session()


def _images(batch=2, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


def test_outputs_at_every_level(tiny_model):
    x = _images()
    outputs = tiny_model([x, x[::-1]])
    shapes = {key: tuple(value.shape) for key, value in outputs.items()}
    assert shapes == {"flow": (2, 64, 64, 2), "flow4": (2, 16, 16, 2),
                      "flow4_coarse": (2, 16, 16, 2), "flow8": (2, 8, 8, 2),
                      "flow16": (2, 4, 4, 2), "flow32": (2, 2, 2, 2)}
    assert all(value.dtype == "float32" for value in outputs.values())


def test_inference_model_is_the_full_resolution_output(tiny_model):
    x = _images(batch=1)
    inference = pwc.inference_model(tiny_model)
    flow = inference.predict_on_batch([x, x])
    np.testing.assert_allclose(flow, np.asarray(tiny_model([x, x])["flow"]), atol=1e-5)
    assert siamese.model_variant(inference) == "pwc"
    assert siamese.stride_of("pwc") == 32


def test_correlation_of_identical_features_peaks_at_zero_shift():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(1, 12, 12, 16)).astype(np.float32)
    # Unit root-mean-square per pixel, as the model's corr{s}_norm layers make them: then
    # by Cauchy-Schwarz no other shift can score as high as the zero shift.
    features /= np.sqrt((features ** 2).mean(-1, keepdims=True))
    cost = np.asarray(pwc.LocalCorrelation(4)(features, features))
    assert cost.shape == (1, 12, 12, 81)
    centre = 4 * 9 + 4
    assert np.all(cost.argmax(-1) == centre)
    np.testing.assert_allclose(cost[..., centre], (features ** 2).mean(-1), rtol=1e-5)


def test_correlation_finds_a_known_shift():
    rng = np.random.default_rng(4)
    features0 = rng.normal(size=(1, 16, 16, 8)).astype(np.float32)
    # features1(x + d) = features0(x) with d = (dx, dy) = (2, -1)
    features1 = np.roll(features0, shift=(-1, 2), axis=(1, 2))
    cost = np.asarray(pwc.LocalCorrelation(4)(features0, features1))
    assert cost[0, 6, 6].argmax() == (-1 + 4) * 9 + (2 + 4)


def test_convex_upsampling_of_a_constant_flow():
    rng = np.random.default_rng(5)
    flow = np.broadcast_to(np.array([1.5, -2.0], np.float32), (2, 4, 5, 2)).copy()
    mask = rng.normal(0, 3, (2, 4, 5, 9 * 16)).astype(np.float32)
    up = np.asarray(pwc.ConvexUpsample(4)(flow, mask))
    assert up.shape == (2, 16, 20, 2)
    np.testing.assert_allclose(up, np.broadcast_to([6.0, -8.0], up.shape), rtol=1e-5)


def test_convex_upsampling_with_one_hot_mask_copies_the_neighbour():
    flow = np.arange(2 * 3 * 3 * 2, dtype=np.float32).reshape(2, 3, 3, 2)
    mask = np.full((2, 3, 3, 9 * 4), -50.0, np.float32)
    mask[..., 4::9] = 50.0  # neighbour 4 = the cell itself, for every sub-pixel
    up = np.asarray(pwc.ConvexUpsample(2)(flow, mask))
    np.testing.assert_allclose(up, 2 * np.repeat(np.repeat(flow, 2, 1), 2, 2), rtol=1e-5)


def test_level_loss_known_answer():
    target = np.zeros((1, 8, 8, 3), np.float32)
    target[..., 0], target[..., 1], target[..., 2] = 3.0, 4.0, 1.0
    target[0, :4, :4, 2] = 0.0  # one 4x4 cell entirely invalid
    loss = LevelRobustLoss(stride=4, alpha=0.5, epsilon=0.0)
    value = float(loss(target, np.zeros((1, 2, 2, 2), np.float32)))
    assert value == pytest.approx(5.0, rel=1e-5)
    # The invalid cell does not count, whatever is predicted there.
    prediction = np.zeros((1, 2, 2, 2), np.float32)
    prediction[0, 0, 0] = [100.0, 100.0]
    assert float(loss(target, prediction)) == pytest.approx(5.0, rel=1e-5)


def test_curriculum_rises_then_stays():
    assert tracking_data.curriculum_high(0, curriculum_steps=100, start=0.4, end=1.2) == 0.4
    assert tracking_data.curriculum_high(50, curriculum_steps=100, start=0.4, end=1.2) == \
        pytest.approx(0.8)
    assert tracking_data.curriculum_high(500, curriculum_steps=100, start=0.4, end=1.2) == 1.2


def test_one_training_step_changes_the_decoder_not_the_frozen_trunk(tmp_path):
    keras.backend.clear_session()
    model = pwc.build_pwc(**TINY)
    trunk = model.get_layer("trunk")
    trunk.get_layer("conv1_1").trainable = False
    compile_pwc(model, learning_rate=1e-2)
    x = {"image0": _images(), "image1": _images(seed=1)}
    target = np.concatenate([np.full((2, 64, 64, 2), 5.0), np.ones((2, 64, 64, 1))], -1)
    targets = {key: target.astype(np.float32) for key in PWC_LOSS_WEIGHTS}
    frozen = trunk.get_layer("conv1_1").get_weights()[0].copy()
    decoder = model.get_layer("decoder4_conv1").get_weights()[0].copy()
    losses = model.train_on_batch(x, targets, return_dict=True)
    assert np.isfinite(losses["loss"])
    # Zero flow against 5 px everywhere: each level's Charbonnier is about sqrt(50)^0.9.
    assert losses["loss"] > 0.5 * sum(w for _, w in PWC_LOSS_WEIGHTS.values()) * 50 ** 0.45
    np.testing.assert_array_equal(trunk.get_layer("conv1_1").get_weights()[0], frozen)
    assert not np.allclose(model.get_layer("decoder4_conv1").get_weights()[0], decoder)
    # A resume reloads the checkpoint compiled: the multi-scale loss and the step count.
    model.save(tmp_path / "last.keras")
    resumed = keras.saving.load_model(tmp_path / "last.keras")
    assert {key: (type(loss), loss.stride) for key, loss in resumed.loss.items()} == {
        key: (LevelRobustLoss, stride) for key, (stride, _) in PWC_LOSS_WEIGHTS.items()}
    assert int(resumed.optimizer.iterations.numpy()) == 1
    keras.backend.clear_session()


def test_pairs_made_on_the_fly_have_exact_flow(rng):
    image0 = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    image0 = np.asarray(__import__("cv2").GaussianBlur(image0, (0, 0), 3))
    image1, flow, valid = tracking_data.make_pair(image0, rng=rng, strength=0.5)
    assert image1.shape == image0.shape and flow.shape == (96, 128, 2)
    assert valid.dtype == bool and valid.mean() > 0.5
    assert np.abs(flow[valid]).max() > 0.5  # it moved


def test_synthetic_pair_is_make_pair_at_a_drawn_strength():
    image0 = np.asarray(__import__("cv2").GaussianBlur(
        np.random.default_rng(7).integers(0, 255, (64, 80, 3), dtype=np.uint8), (0, 0), 3))
    drawn = tracking_data.synthetic_pair(image0, rng=np.random.default_rng(9),
                                         strength_range=(0.4, 1.3))
    rng = np.random.default_rng(9)
    made = tracking_data.make_pair(image0, rng=rng, strength=rng.uniform(0.4, 1.3))
    for a, b in zip(drawn, made):
        np.testing.assert_array_equal(a, b)


def test_pwc_examples_are_crops_with_flow_and_validity(tmp_path, rng):
    from synth.io import InputError, write_image

    image = np.asarray(__import__("cv2").GaussianBlur(
        rng.integers(0, 255, (96, 96, 3), dtype=np.uint8), (0, 0), 2))
    write_image(tmp_path / "a.png", image)
    stream = tracking_data.iterate_pwc_examples(tmp_path, [{"image": "a.png"}], seed=0,
                                                batch=1, crop=64, scale_range=(1.0, 1.0),
                                                curriculum_steps=0, pool_size=2)
    image0, image1, target = next(stream)
    assert image0.shape == image1.shape == (64, 64, 3) and target.shape == (64, 64, 3)
    assert set(np.unique(target[..., 2])) <= {0.0, 1.0} and target[..., 2].mean() > 0.3
    with pytest.raises(InputError, match="no photos"):
        tracking_data.PairPool(tmp_path, [], rng=rng)


def test_cli_variant_pwc_calls_train_pwc(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from lesiontrack import cli
    from lesiontrack.tracking import train

    calls = []

    def fake_train_pwc(dataset, out, **options):
        calls.append((dataset, out, options))
        return [{"epoch": 1, "val_epe": 4.0, "val_pck05": 0.5}]

    monkeypatch.setattr(train, "train_pwc", fake_train_pwc)
    result = CliRunner().invoke(cli.main, [
        "train", "tracker", str(tmp_path / "ds"), "--variant", "pwc", "--out",
        str(tmp_path / "t.keras"), "--freeze", "conv1,conv2", "--curriculum-steps", "600",
        "--crop", "192", "--min-scale", "0.5"])
    assert result.exit_code == 0, result.output
    assert "val EPE 4.00 px" in result.output
    (dataset, out, options), = calls
    assert options["freeze"] == ("conv1", "conv2") and options["curriculum_steps"] == 600
    assert options["crop"] == 192 and options["scale_range"] == (0.5, 1.0)
    assert options["decay"] is None and options["val_diagonal"] is None

    calls.clear()
    result = CliRunner().invoke(cli.main, [
        "train", "tracker", str(tmp_path / "ds"), "--variant", "pwc", "--out",
        str(tmp_path / "t.keras"), "--min-scale", "0.45", "--max-scale", "0.55",
        "--lr-decay", "0:48", "--lr-final", "1e-5", "--val-diagonal", "362"])
    assert result.exit_code == 0, result.output
    (_, _, options), = calls
    assert options["scale_range"] == (0.45, 0.55) and options["decay"] == (0, 48)
    assert options["final_learning_rate"] == 1e-5 and options["val_diagonal"] == 362
    for bad, message in ((["--min-scale", "0.6", "--max-scale", "0.5"], "below --min-scale"),
                         (["--lr-decay", "10"], "FIRST:LAST"),
                         (["--lr-decay", "10:4"], "LAST must follow")):
        result = CliRunner().invoke(cli.main, [
            "train", "tracker", str(tmp_path / "ds"), "--variant", "pwc", "--out",
            str(tmp_path / "t.keras"), *bad])
        assert result.exit_code == 2 and message in result.output, result.output


def test_a_pwc_run_can_start_from_a_pwc_tracker(tmp_path):
    from lesiontrack.tracking.train import _initial_pwc_model

    keras.backend.clear_session()
    source = pwc.build_pwc(**TINY)
    compile_pwc(source)
    source.save(tmp_path / "source.keras")
    model = _initial_pwc_model(tmp_path / "source.keras", ("conv1",))
    for a, b in zip(model.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
    trunk = model.get_layer("trunk")
    assert not trunk.get_layer("conv1_1").trainable and trunk.get_layer("conv2_1").trainable
    keras.backend.clear_session()


def test_validation_at_a_working_diagonal_reports_in_the_pairs_pixels(monkeypatch):
    from lesiontrack.tracking import train

    seen = []

    def constant_flow(model, image0, image1):
        seen.append(image0.shape)
        flow = np.zeros(image0.shape[:2] + (2,), np.float32)
        flow[..., 0] = 2.0  # 2 px at the working size
        return flow

    size = 128
    pair = (np.zeros((size, size, 3), np.uint8), np.zeros((size, size, 3), np.uint8),
            np.dstack([np.full((size, size), 4.0), np.zeros((size, size))]).astype(np.float32),
            np.ones((size, size), bool))
    monkeypatch.setattr(train, "predict_pwc", constant_flow)
    monkeypatch.setattr("lesiontrack.tracking.data.load_pair", lambda root, record: pair)
    full = train.evaluate_pwc_flow(None, "ds", [{}], limit=1)
    half = train.evaluate_pwc_flow(None, "ds", [{}], limit=1, max_diagonal=size * 2 ** 0.5 / 2)
    assert seen == [(128, 128, 3), (64, 64, 3)]
    assert full["epe"] == pytest.approx(2.0)
    assert half["epe"] == pytest.approx(0.0, abs=1e-5)  # 2 px at half size is the true 4 px
