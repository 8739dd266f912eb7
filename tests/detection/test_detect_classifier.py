"""detect() with the second-stage classifier."""
import numpy as np


def test_detect_grades_its_lesions_with_a_classifier(small_classifier):
    from lesiontrack.detection.detect import detect
    from lesiontrack.detection.model import FCN

    detector = FCN(filters=(4, 8))
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    plain = detect(image, model=detector, threshold=0.0, skin=None, classifier=None)
    graded = detect(image, model=detector, threshold=0.0, skin=None, classifier=small_classifier)
    assert plain and len(graded) == len(plain)
    assert [g["malignancy_fcn"] for g in graded] == [p["malignancy"] for p in plain]
    assert all("atypicality" in g for g in graded) and all("atypicality" not in p for p in plain)
