"""Second-stage classifier: model, crops through it, atypicality."""
import numpy as np
import pytest

from lesiontrack.detection.classifier import atypicality


def test_atypicality_of_an_outlier_among_identical_embeddings_is_highest():
    embeddings = np.tile([1.0, 0.0, 0.0], (5, 1))
    embeddings = np.vstack([embeddings, [0.0, 1.0, 0.0]])
    values = atypicality(embeddings)
    assert np.argmax(values) == 5
    np.testing.assert_allclose(values[:5], 0.0, atol=1e-12)
    np.testing.assert_allclose(values[5], np.sqrt(2.0))


def test_atypicality_of_one_and_two_lesions():
    np.testing.assert_array_equal(atypicality(np.ones((1, 4))), [0.0])
    np.testing.assert_allclose(atypicality([[0.0, 0.0], [3.0, 4.0]]), [5.0, 5.0])
    assert atypicality(np.zeros((0, 3))).shape == (0,)
    with pytest.raises(ValueError):
        atypicality(np.zeros(3))


def test_classifier_builds_at_32_px_and_takes_a_training_step(small_classifier):
    import keras

    from lesiontrack.detection.classifier import training_view

    model = small_classifier
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    malignancy, embedding = model(crops, training=False)
    assert tuple(malignancy.shape) == (4, 1) and tuple(embedding.shape) == (4, 12)
    # Unit-length features divided by the scale of 2.
    np.testing.assert_allclose(np.linalg.norm(np.asarray(embedding), axis=1), 0.5, atol=1e-4)
    trainer = training_view(model)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    before = [w.copy() for w in model.get_layer("malignancy").get_weights()]
    loss = trainer.train_on_batch(crops, np.array([[1], [0], [1], [0]], np.float32))
    assert np.isfinite(float(np.asarray(loss).ravel()[0]))
    after = model.get_layer("malignancy").get_weights()
    assert not np.allclose(before[0], after[0])  # the step reached the shared layers


def test_rescaled_copy_keeps_malignancy_and_rescales_embedding(small_classifier):
    from lesiontrack.detection.classifier import predict_crops, with_embedding_scale

    crops = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    copy = with_embedding_scale(small_classifier, 4.0)
    p0, e0 = predict_crops(small_classifier, crops)
    p1, e1 = predict_crops(copy, crops)
    np.testing.assert_allclose(p0, p1, atol=1e-6)
    np.testing.assert_allclose(e1, e0 / 2.0, atol=1e-6)
    assert ((p0 >= 0) & (p0 <= 1)).all()


def test_score_lesions_and_saved_file_round_trip(small_classifier, tmp_path):
    from lesiontrack.detection.classifier import load_classifier_file, score_lesions
    from synth.io import InputError

    image = np.full((64, 64, 3), 180, np.uint8)
    image[10:20, 10:20] = 40
    lesions = [{"bbox": [10, 10, 10, 10]}, {"bbox": [40, 40, 8, 8]}, {"bbox": [0, 50, 6, 6]}]
    malignancy, atypical = score_lesions(image, lesions, small_classifier)
    assert malignancy.shape == (3,) and atypical.shape == (3,)
    path = tmp_path / "classifier.keras"
    small_classifier.save(path)
    loaded = load_classifier_file(path)
    again, _ = score_lesions(image, lesions, loaded)
    np.testing.assert_allclose(again, malignancy, atol=1e-6)
    (tmp_path / "bad.keras").write_bytes(b"not a model")
    with pytest.raises(InputError, match="bad.keras"):
        load_classifier_file(tmp_path / "bad.keras")


def test_grade_lesions_keeps_the_fcn_score_beside_the_second_stage(small_classifier):
    from lesiontrack.detection.classifier import grade_lesions

    image = np.full((64, 64, 3), 180, np.uint8)
    lesions = [{"id": 1, "bbox": [10, 10, 8, 8], "malignancy": 0.9, "label": "malignant"},
               {"id": 2, "bbox": [40, 30, 6, 6], "malignancy": 0.1, "label": "benign"}]
    graded = grade_lesions(image, lesions, small_classifier)
    assert [g["malignancy_fcn"] for g in graded] == [0.9, 0.1]
    for record in graded:
        assert 0.0 <= record["malignancy"] <= 1.0 and record["atypicality"] >= 0.0
        assert record["label"] == ("malignant" if record["malignancy"] >= 0.5 else "benign")
    assert lesions[0]["malignancy"] == 0.9  # the input records are left alone
    assert grade_lesions(image, [], small_classifier) == []



def test_skin_relative_subtracts_the_mean_colour_of_the_outer_band():
    from lesiontrack.detection.classifier import SkinRelative

    crop = np.zeros((1, 8, 8, 3), np.float32)
    crop[..., 0] = 10.0  # skin
    crop[0, 2:6, 2:6, 0] = 50.0  # the lesion, the central half
    crop[..., 1] = np.arange(8, dtype=np.float32)[None, :, None]  # a ramp down the rows
    out = np.asarray(SkinRelative()(crop))
    np.testing.assert_allclose(out[0, 0, 0, 0], 0.0, atol=1e-5)
    np.testing.assert_allclose(out[0, 3, 3, 0], 40.0, atol=1e-5)
    np.testing.assert_allclose(out[0, :, 0, 1], np.arange(8) - 3.5, atol=1e-5)  # band mean 3.5


def test_classifier_with_colour_inputs_round_trips(tmp_path):
    import keras

    from lesiontrack.detection.classifier import (build_classifier, colour_inputs,
                                                  load_classifier_file, predict_crops,
                                                  with_embedding_scale)

    crops = np.random.default_rng(3).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    colour = colour_inputs(crops)
    assert colour.shape == (3, 31) and colour.dtype == np.float32
    red = np.zeros((1, 32, 32, 3), np.uint8)
    red[:, 8:24, 8:24] = (255, 0, 0)  # the lesion's box, the central half
    assert colour_inputs(red)[0, 0] == pytest.approx(53.24, abs=0.1)  # L* of red
    model = build_classifier(size=32, filters=(8,), features=8,
                             colour_mean=colour.mean(0), colour_variance=colour.var(0) + 1)
    p0, e0 = predict_crops(model, crops)
    copy = with_embedding_scale(model, 2.0)
    model.save(tmp_path / "colour.keras")
    p1, e1 = predict_crops(load_classifier_file(tmp_path / "colour.keras"), crops)
    np.testing.assert_allclose(p1, p0, atol=1e-6)
    np.testing.assert_allclose(predict_crops(copy, crops)[1], e0 / 2.0, atol=1e-6)
    keras.backend.clear_session()
