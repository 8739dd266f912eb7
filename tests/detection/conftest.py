"""Fixtures of the detection tests."""
import pytest


@pytest.fixture(scope="session")
def small_classifier():
    import keras

    from lesiontrack.detection.classifier import build_classifier

    keras.utils.set_random_seed(0)
    model = build_classifier(size=32, filters=(8, 16), features=12, embedding_scale=2.0)
    yield model
    keras.backend.clear_session()
