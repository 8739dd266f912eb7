"""Siamese tracker network: shapes, custom layers, weight transfer, one training step."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from lesiontrack import model_cache  # noqa: E402
from lesiontrack.tracking import model as siamese  # noqa: E402
from synth.io import InputError  # noqa: E402

TINY = (4, 8, 8, 8)


@pytest.fixture(scope="module")
def trackers():
    """All variants, small widths, built once."""
    keras.backend.clear_session()
    models = {variant: siamese.build_siamese(TINY, variant=variant, atrous_width=8,
                                             head_widths=(8, 8))
              for variant in siamese.VARIANTS}
    yield models
    keras.backend.clear_session()


def _images(batch=2, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


@pytest.mark.parametrize("variant", siamese.VARIANTS)
def test_output_shape(trackers, variant):
    x = _images()
    flow = trackers[variant].predict_on_batch([x, x[::-1]])
    assert flow.shape == (2, 64, 64, 2)
    assert flow.dtype == np.float32
    assert siamese.model_variant(trackers[variant]) == variant


def test_default_model_shape_and_stride():
    keras.backend.clear_session()
    model = siamese.Tracker()
    x = _images(batch=1)
    assert model.predict_on_batch([x, x]).shape == (1, 64, 64, 2)
    assert siamese.stride_of("costvolume") == 16 and siamese.stride_of("subtract") == 4
    assert siamese.stride_of("refine") == 4
    assert siamese.count_parameters(model) < 1_500_000  # lean: see the module docstring


def test_refine_starts_with_zero_residual(trackers):
    x = _images()
    residual = trackers["refine"].predict_on_batch([x, x[::-1]])
    np.testing.assert_array_equal(residual, 0.0)


def test_unknown_variant():
    with pytest.raises(ValueError, match="variant"):
        siamese.build_siamese(TINY, variant="concat")


def test_correlation_matches_numpy(rng):
    f0 = rng.normal(size=(1, 5, 6, 3)).astype(np.float32)
    f1 = rng.normal(size=(1, 5, 6, 3)).astype(np.float32)
    cost = np.asarray(siamese.Correlation(1)(f0, f1))
    assert cost.shape == (1, 5, 6, 9)
    padded = np.pad(f1, ((0, 0), (1, 1), (1, 1), (0, 0)))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            expected = (f0 * padded[:, 1 + dy:6 + dy, 1 + dx:7 + dx]).mean(-1)
            np.testing.assert_allclose(cost[..., (dy + 1) * 3 + dx + 1], expected, atol=1e-6)


def test_soft_argmax_flow_of_a_peaked_cost():
    cost = np.full((1, 2, 3, 25), -1.0, np.float32)
    cost[..., (1 + 2) * 5 + (-2 + 2)] = 1.0  # dy = +1, dx = -2 cells
    flow = np.asarray(siamese.SoftArgmaxFlow(2, cell=16.0, initial_beta=50.0)(cost))
    assert flow.shape == (1, 2, 3, 2)
    np.testing.assert_allclose(flow[..., 0], -32.0, atol=1e-3)
    np.testing.assert_allclose(flow[..., 1], 16.0, atol=1e-3)


def test_backward_warp_integer_shift(rng):
    features = rng.normal(size=(1, 8, 10, 2)).astype(np.float32)
    # A flow of (8, -4) full-resolution pixels is (2, -1) cells at 1/4 resolution.
    flow = np.tile(np.array([8.0, -4.0], np.float32), (1, 8, 10, 1))
    warped = np.asarray(siamese.BackwardWarp(0.25)(features, flow))
    np.testing.assert_allclose(warped[:, 1:, :8], features[:, :7, 2:], atol=1e-6)
    # Off the frame the border is replicated.
    np.testing.assert_allclose(warped[:, 0, :8], features[:, 0, 2:], atol=1e-6)


def test_upsample_keeps_values():
    x = np.full((1, 3, 5, 2), 7.0, np.float32)
    y = np.asarray(siamese.Upsample(4)(x))
    assert y.shape == (1, 12, 20, 2)
    np.testing.assert_allclose(y, 7.0)


def test_detector_weights_copied_by_name(tiny_detector_path):
    keras.backend.clear_session()
    detector = keras.saving.load_model(tiny_detector_path, compile=False)
    tracker = siamese.Tracker(detector=tiny_detector_path)
    copied = siamese.load_detector_weights(tracker, detector)
    assert {"conv1_1", "conv1_1_bn", "conv3_2", "conv4_2"} <= set(copied)
    assert "classes" not in copied
    trunk = tracker.get_layer("trunk")
    for name in ("conv1_1", "conv2_2_bn", "conv4_1"):
        for got, want in zip(trunk.get_layer(name).get_weights(),
                             detector.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)


def test_mismatched_widths_are_skipped(tiny_detector_path):
    keras.backend.clear_session()
    tracker = siamese.build_siamese((6, 8, 8, 8), atrous_width=8, head_widths=(8,))
    copied = siamese.load_detector_weights(tracker, tiny_detector_path)
    assert "conv1_1" not in copied and "conv2_2" in copied


def test_missing_weights_raise(tmp_path, monkeypatch):
    monkeypatch.setitem(model_cache.DEFAULT_WEIGHTS, "tracker", tmp_path / "tracker.keras")
    with pytest.raises(InputError, match="default tracker weights not found"):
        siamese.Tracker(weights="default")
    with pytest.raises(InputError, match="no such"):
        siamese.Tracker(weights=tmp_path / "nothing.keras")


@pytest.mark.parametrize("variant", ["costvolume", "refine"])
def test_save_load_round_trip(trackers, tmp_path, variant):
    model = trackers[variant]
    path = tmp_path / "tracker.keras"
    model.save(path)
    loaded = siamese.Tracker(weights=path)
    assert siamese.model_variant(loaded) == variant
    x = _images(batch=1, size=32, seed=3)
    np.testing.assert_allclose(loaded.predict_on_batch([x, x[:, ::-1]]),
                               model.predict_on_batch([x, x[:, ::-1]]), atol=1e-5)


@pytest.mark.parametrize("variant, head", [("subtract", "flow"), ("refine", "residual")])
def test_one_training_step(trackers, variant, head):
    from lesiontrack.tracking.losses import EndPointError, RobustEPELoss

    model = trackers[variant]  # the cost-volume variant trains in test_tracker's CLI test
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=RobustEPELoss(),
                  metrics=[EndPointError()])
    from lesiontrack.metrics import endpoint_errors
    from lesiontrack.tracking.losses import robust_epe

    x = _images()
    target = np.zeros((2, 64, 64, 3), np.float32)
    target[..., 0], target[..., 2] = 3.0, 1.0
    target[:, :8, :, 2] = 0.0  # a band of invalid pixels that must not count
    # The step's loss and EPE are those of the forward pass before the update (batch
    # statistics in the normalisation layers, as in training).
    predicted = np.asarray(model([x, x], training=True))
    before = [w.copy() for w in model.get_layer(head).get_weights()]
    logs = model.train_on_batch([x, x], target, return_dict=True)
    valid = target[..., 2] > 0
    assert logs["loss"] == pytest.approx(robust_epe(predicted, target[..., :2], valid), rel=1e-4)
    assert logs["epe"] == pytest.approx(endpoint_errors(predicted, target[..., :2])[valid].mean(),
                                        rel=1e-4)
    if variant == "refine":  # zero residual at initialisation: the known answer of eq. 1
        assert logs["loss"] == pytest.approx((9.0 + 1e-6) ** 0.45, rel=1e-5)
        assert logs["epe"] == pytest.approx(3.0, rel=1e-6)
    after = model.get_layer(head).get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
