"""Tests of the detector model factory."""
import keras
import numpy as np
import pytest

from lesiontrack import model_cache
from lesiontrack.detection.model import FCN, STRIDE, fold_batch_norm, model_stride
from synth.io import InputError


@pytest.fixture(autouse=True)
def _clear():
    yield
    keras.backend.clear_session()


def test_random_model_shapes_and_names():
    model = FCN(filters=(4, 8, 8, 8))
    out = model(np.zeros((1, 64, 64, 3), np.float32))
    assert out.shape == (1, 64, 64, 3)
    np.testing.assert_allclose(np.asarray(out).sum(-1), 1.0, atol=1e-5)
    names = {layer.name for layer in model.layers}
    assert {"conv1_1", "conv4_2", "pool2", "up1", "merge1", "deconv1_2", "classes"} <= names
    assert model_stride(model) == STRIDE == 8


def test_folded_batch_norm_gives_the_same_probabilities():
    model = FCN(filters=(4, 8, 8, 8))
    rng = np.random.default_rng(0)
    for layer in model.layers:  # statistics far from the initial identity map
        if layer.name.endswith("_bn"):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2, gamma.shape), rng.normal(0, 0.5, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.2, 3, variance.shape)])
    folded = fold_batch_norm(model)
    assert not any(layer.name.endswith("_bn") for layer in folded.layers)
    assert model_stride(folded) == model_stride(model)
    x = rng.uniform(0, 255, (2, 64, 48, 3)).astype(np.float32)
    expected = np.asarray(model(x, training=False))
    np.testing.assert_allclose(np.asarray(folded(x)), expected, atol=1e-5)
    assert fold_batch_norm(folded) is folded


def test_loads_keras_file_with_its_own_architecture(tiny_detector_path):
    model = FCN(weights=tiny_detector_path)
    reference = keras.saving.load_model(tiny_detector_path, compile=False)
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(model(x), reference(x), atol=1e-6)


def test_incompatible_weights_name_the_file(tiny_detector_path):
    with pytest.raises(InputError, match="tiny.keras"):
        FCN(weights=tiny_detector_path, filters=(16, 32, 64, 96))


def test_unreadable_weights_name_the_file(tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="broken.keras"):
        FCN(weights=bad)
    with pytest.raises(InputError, match="missing.keras"):
        FCN(weights=tmp_path / "missing.keras")


def test_missing_default_weights_tell_how_to_train(tmp_path, monkeypatch):
    monkeypatch.setitem(model_cache.DEFAULT_WEIGHTS, "detector", tmp_path / "detector.keras")
    with pytest.raises(InputError, match="train"):
        FCN(weights="default")
