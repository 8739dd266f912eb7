"""Training data of the second-stage classifier."""
import json

import numpy as np

from lesiontrack.detection.train_classifier import _library_patients, class_weights


def test_class_weights_give_both_classes_the_same_total():
    weights = class_weights([True, False, False, False])
    np.testing.assert_allclose(weights, [2.0, 2 / 3, 2 / 3, 2 / 3])
    assert weights[:1].sum() == weights[1:].sum()


def test_library_patients_of_single_and_multi_library_datasets(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"sources": {"lesion_libraries": [
        {"folder": str(tmp_path / "pad"), "name": "pad-ufes-20"},
        {"folder": str(tmp_path / "isic"), "name": "isic2017"}]}}))
    patients = {"pad-ufes-20/PAT_1", "pad-ufes-20/PAT_2", "isic2017/ISIC_7"}
    assert _library_patients(tmp_path, tmp_path / "pad", patients) == {"PAT_1", "PAT_2"}
    assert _library_patients(tmp_path, tmp_path / "isic", patients) == {"ISIC_7"}
    assert _library_patients(tmp_path, tmp_path / "pad", {"PAT_1", "PAT_3"}) == {"PAT_1", "PAT_3"}


def test_cli_trains_saves_and_the_model_grades_lesions(tiny_dataset, tmp_path):
    import keras
    from click.testing import CliRunner

    from lesiontrack.cli import main
    from lesiontrack.detection.classifier import load_classifier_file, predict_crops
    from synth.io import read_json

    keras.backend.clear_session()
    out = tmp_path / "classifier.keras"
    result = CliRunner().invoke(main, ["train", "classifier", str(tiny_dataset), "--out", str(out),
                                       "--size", "16", "--epochs", "1", "--batch", "4"])
    assert result.exit_code == 0, result.output
    assert "val AUC" in result.output
    summary = read_json(out.with_suffix(".json"))
    assert summary["train_crops"] == 6 and summary["val_crops"] == 3  # 4 + 2 disks per split
    assert summary["embedding_scale"] > 0
    model = load_classifier_file(out)
    probabilities, embeddings = predict_crops(model, np.zeros((2, 16, 16, 3), np.uint8))
    assert probabilities.shape == (2,) and embeddings.shape[0] == 2
    keras.backend.clear_session()


def test_cli_missing_dataset_is_one_line_error(tmp_path):
    from click.testing import CliRunner

    from lesiontrack.cli import main

    result = CliRunner().invoke(main, ["train", "classifier", str(tmp_path / "none"),
                                       "--out", str(tmp_path / "c.keras")])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and "none" in result.output
