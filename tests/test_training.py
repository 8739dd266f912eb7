"""The shared training loop's files and the mixed-precision switch."""
import pytest

from lesiontrack.training import (TrainingFiles, cosine_step_size, fit, mixed_precision,
                                  step_size_schedule)
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


def test_cosine_step_size_follows_the_half_cosine():
    schedule = cosine_step_size(4e-4, start=10, end=20, final=2e-5)
    assert schedule(0) == schedule(10) == pytest.approx(4e-4)
    assert schedule(15) == pytest.approx((4e-4 + 2e-5) / 2)
    assert schedule(20) == schedule(50) == pytest.approx(2e-5)
    values = [schedule(e) for e in range(10, 21)]
    assert all(a > b for a, b in zip(values, values[1:]))
    with pytest.raises(InputError, match="must follow"):
        cosine_step_size(1e-3, start=5, end=5, final=1e-4)


def test_step_size_schedule_of_the_options():
    assert step_size_schedule(1e-3, None) == (None, {})
    schedule, entries = step_size_schedule(1e-3, (2, 4))
    assert entries == {"decay": [2, 4], "final_learning_rate": 5e-5}   # a twentieth by default
    assert schedule(2) == pytest.approx(1e-3) and schedule(4) == pytest.approx(5e-5)
    schedule, entries = step_size_schedule(1e-3, (0, 2), 1e-4)
    assert schedule(1) == pytest.approx(5.5e-4) and entries["final_learning_rate"] == 1e-4


def test_fit_sets_and_logs_the_step_size_and_resumes_on_the_curve(tmp_path):
    keras = pytest.importorskip("keras")
    import numpy as np
    import tensorflow as tf

    def make_model():
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        return model

    data = tf.data.Dataset.from_tensors((np.ones((4, 2), np.float32), np.ones((4, 1), np.float32)))
    seen = []

    def validate(model):
        seen.append(float(model.optimizer.learning_rate.numpy()))
        return {"loss": 1.0}

    schedule = cosine_step_size(1e-2, start=1, end=3, final=1e-3)
    out = tmp_path / "model.keras"
    fit(make_model(), lambda epoch: data.repeat(), validate, out, epochs=2, steps=1,
        monitor="loss", mode="min", step_size=schedule)
    _, history = fit(make_model(), lambda epoch: data.repeat(), validate, out, epochs=4,
                     steps=1, monitor="loss", mode="min", step_size=schedule)
    expected = [schedule(e) for e in range(4)]
    assert seen == pytest.approx(expected)
    assert [row["lr"] for row in history] == pytest.approx(expected)
    assert expected[1] > expected[2] > expected[3]
