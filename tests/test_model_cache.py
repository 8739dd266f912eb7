"""Weights files and the one cache of loaded models."""
import os

import numpy as np
import pytest

from lesiontrack import model_cache
from synth.io import InputError


def test_resolve_weights(tmp_path, monkeypatch):
    path = tmp_path / "mine.keras"
    path.write_bytes(b"x")
    assert model_cache.resolve_weights(path, "detector") == path
    assert model_cache.resolve_weights(str(path), "tracker") == path
    with pytest.raises(InputError, match="nothing.keras: no such tracker weights file"):
        model_cache.resolve_weights(tmp_path / "nothing.keras", "tracker")
    monkeypatch.setitem(model_cache.DEFAULT_WEIGHTS, "detector", tmp_path / "gone.keras")
    with pytest.raises(InputError, match="default detector weights not found; train them"):
        model_cache.resolve_weights("default", "detector")
    with pytest.raises(ValueError, match="kind"):
        model_cache.resolve_weights(path, "classifier2")


def test_shipped_weights_are_found():
    for kind in ("detector", "tracker"):
        assert model_cache.resolve_weights("default", kind).name == f"{kind}.keras"


def test_cached_model_builds_once_per_file(tmp_path, monkeypatch):
    monkeypatch.setattr(model_cache, "_MODELS", {})
    first, second = tmp_path / "a.keras", tmp_path / "b.keras"
    first.write_bytes(b"1")
    second.write_bytes(b"2")
    built = []

    def build(path):
        built.append(path.name)
        return object()

    a = model_cache.cached_model("detector", first, build)
    assert model_cache.cached_model("detector", first, build) is a
    # Another kind has its own slot; another file of the same kind replaces the model.
    model_cache.cached_model("tracker", second, build)
    assert model_cache.cached_model("detector", first, build) is a
    b = model_cache.cached_model("detector", second, build)
    assert b is not a and model_cache.cached_model("detector", second, build) is b
    # A rewritten file (new modification time) is loaded again.
    os.utime(second, ns=(1, 1))
    assert model_cache.cached_model("detector", second, build) is not b
    assert built == ["a.keras", "b.keras", "b.keras", "b.keras"]


def test_load_model_file_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.keras: no such file"):
        model_cache.load_model_file(tmp_path / "missing.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.keras: not a Keras model file"):
        model_cache.load_model_file(bad)


def test_weights_id(tmp_path):
    path = tmp_path / "w.keras"
    path.write_bytes(b"abc")
    # SHA-256 of b"abc" starts ba7816bf8f01.
    assert model_cache.weights_id(path) == {"path": str(path), "sha256": "ba7816bf8f01"}


def test_graph_function_is_made_once_per_model():
    keras = pytest.importorskip("keras")

    keras.backend.clear_session()
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Rescaling(2.0)(inputs))
    function = model_cache.graph_function(model)
    assert model_cache.graph_function(model) is function
    x = np.ones((1, 4, 5, 3), np.float32)
    np.testing.assert_array_equal(np.asarray(function(x)), 2.0)
    keras.backend.clear_session()
