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
