"""The shared training loop's files and the mixed-precision switch."""
import pytest

from lesiontrack.training import TrainingFiles, mixed_precision
from synth.io import InputError


def test_training_files_beside_the_model(tmp_path):
    files = TrainingFiles.beside(tmp_path / "run" / "model.keras")
    assert files.best == tmp_path / "run" / "model.keras"
    assert files.last.name == "model.last.keras" and files.state.name == "model.state.json"
    assert files.log.name == "model.csv" and files.plot.name == "model.png"
    with pytest.raises(InputError, match="must end in .keras"):
        TrainingFiles.beside(tmp_path / "model.h5")


def test_mixed_precision_is_scoped():
    keras = pytest.importorskip("keras")

    before = keras.mixed_precision.dtype_policy().name
    with mixed_precision():
        assert keras.mixed_precision.dtype_policy().name == "mixed_bfloat16"
        layer = keras.layers.Dense(2)
    assert layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32"
    assert keras.mixed_precision.dtype_policy().name == before
    with pytest.raises(RuntimeError):
        with mixed_precision():
            raise RuntimeError("boom")
    assert keras.mixed_precision.dtype_policy().name == before
    with mixed_precision(False):
        assert keras.mixed_precision.dtype_policy().name == before
