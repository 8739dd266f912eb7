"""COCO AP beside FROC, and the figures by Fitzpatrick skin type, on hand-made cases."""
from pathlib import Path

import numpy as np
import pytest

from lesiontrack import evaluate, metrics
from lesiontrack.evaluate import AnnotatedImage


def test_coco_ap_known_cases():
    truth = [np.array([[0, 0, 10, 10], [20, 20, 10, 10]])]
    # One exact hit ranked above one false positive, one lesion missed: precision 1 up to
    # recall 0.5, then nothing; COCO's 101-point interpolation gives 51 / 101.
    hit_then_miss = [(np.array([[0, 0, 10, 10], [50, 50, 10, 10]]), np.array([0.9, 0.8]))]
    ap = metrics.coco_average_precision(hit_then_miss, truth)
    assert ap["ap50"] == pytest.approx(51 / 101) and ap["ap"] == pytest.approx(51 / 101)
    assert (ap["images"], ap["lesions"], ap["detections"]) == (1, 2, 2)
    # IoU 0.62 counts at IoU 0.5, 0.55 and 0.6 only: 3 of the 10 thresholds of AP@[.5:.95].
    partial = [(np.array([[0, 0, 10, 6.2]]), np.array([0.9]))]
    ap = metrics.coco_average_precision(partial, [np.array([[0, 0, 10, 10]])])
    assert ap["ap50"] == pytest.approx(1.0) and ap["ap"] == pytest.approx(0.3)
    assert ap["ap75"] == pytest.approx(0.0)
    # A false positive on a crowd (ignore) region is not counted.
    crowd = metrics.coco_average_precision(
        [(np.array([[50, 50, 10, 10], [0, 0, 10, 10]]), np.array([0.95, 0.9]))],
        [np.array([[0, 0, 10, 10]])], ignore=[np.array([[50, 50, 10, 10]])])
    assert crowd["ap50"] == pytest.approx(1.0)
    assert metrics.coco_average_precision([(np.zeros((0, 4)), np.zeros(0))],
                                          truth)["ap50"] == 0.0
    assert metrics.coco_average_precision([(np.zeros((0, 4)), np.zeros(0))],
                                          [np.zeros((0, 4))])["ap50"] is None
    with pytest.raises(ValueError):
        metrics.coco_average_precision([], truth)


def _detection(box, score, malignancy):
    x, y, w, h = box
    return {"bbox": list(box), "centroid": [x + w / 2, y + h / 2], "score": score,
            "malignancy": malignancy}


A, B, FAR = [0, 0, 10, 10], [20, 20, 10, 10], [50, 50, 10, 10]


def _case(ignore_far=False):
    """Three images, skin types II, IV and VI, each with a malignant (A) and a benign (B) lesion.

    II: both found, malignancy in the right order. IV: only A found, and a false positive
    scored above it. VI: both found, malignancy in the wrong order.
    """
    def image(index, fitzpatrick, ignore=()):
        return AnnotatedImage(id=str(index), image=Path(f"{index}.png"), labels=None,
                              boxes=np.array([A, B], float), malignant=[True, False],
                              diagnosis=["MEL", "NEV"],
                              ignore_boxes=np.array(ignore, float).reshape(-1, 4),
                              fitzpatrick=fitzpatrick)

    items = [image(0, 2), image(1, 4, [FAR] if ignore_far else []), image(2, 6)]
    predictions = [
        [_detection(A, 0.9, 0.8), _detection(B, 0.9, 0.3)],
        [_detection(FAR, 0.95, 0.5), _detection(A, 0.9, 0.7)],
        [_detection(A, 0.9, 0.2), _detection(B, 0.9, 0.7)],
    ]
    return items, predictions


def test_per_skin_tone_groups():
    items, predictions = _case()
    result = evaluate.score_detections(items, predictions, [], [], rng=np.random.default_rng(0))
    tones = result["per_skin_tone"]
    assert list(tones) == ["I-III", "IV", "V-VI"]
    assert tones["I-III"]["sensitivity_at_1fp"] == 1.0 and tones["I-III"]["auc_malignant"] == 1.0
    # IV: one false positive on its one image, then A: 1 of 2 lesions at 1 FP per image.
    assert tones["IV"]["sensitivity_at_1fp"] == 0.5
    assert tones["IV"]["auc_malignant"] is None  # only the malignant lesion was found
    assert (tones["IV"]["malignant"], tones["IV"]["benign"]) == (1, 0)
    assert tones["V-VI"]["sensitivity_at_1fp"] == 1.0 and tones["V-VI"]["auc_malignant"] == 0.0
    assert all(entry["images"] == 1 and entry["lesions"] == 2 for entry in tones.values())
    # The operating point on all images (threshold 0.9, 1/3 FP per image) for every group.
    assert result["operating_point"]["threshold"] == 0.9
    assert [tones[g]["sensitivity_at_operating_point"] for g in tones] == [1.0, 0.5, 1.0]
    # The false positive ranks first, then the 5 hits: precision 5/6 up to recall 5/6.
    assert result["coco_ap"]["ap50"] == pytest.approx(84 / 101 * 5 / 6)


def test_ignore_boxes_are_neutral_in_ap():
    items, predictions = _case(ignore_far=True)
    result = evaluate.score_detections(items, predictions, [], [], rng=np.random.default_rng(0))
    assert result["coco_ap"]["ap50"] == pytest.approx(84 / 101)


def test_no_skin_type_no_groups():
    items, predictions = _case()
    for item in items:
        item.fitzpatrick = None
    result = evaluate.score_detections(items, predictions, [], [], rng=np.random.default_rng(0))
    assert result["per_skin_tone"] == {}


@pytest.mark.parametrize("value, group", [(1, "I-III"), (3, "I-III"), (4, "IV"), ("IV", "IV"),
                                          ("5", "V-VI"), (6, "V-VI"), (7, None), (None, None),
                                          ("dark", None)])
def test_skin_tone_group(value, group):
    assert evaluate.skin_tone_group(evaluate._skin_type(value)) == group


def test_dataset_reader_keeps_skin_type_and_uncertain_boxes(tmp_path):
    from conftest import finish_dataset
    import json

    record = {"id": "000000", "index": 0, "split": "test", "image": "images/000000.jpg",
              "labels": "labels/000000.png", "fitzpatrick": 5,
              "lesions": [{"bbox": A, "label": 2, "malignant": True, "diagnosis": "MEL"},
                          {"bbox": B, "label": 255, "malignant": False, "diagnosis": "NEV"},
                          {"bbox": None, "label": 1, "malignant": False}],
              "real_lesions": [{"bbox": FAR, "label": 3}]}
    finish_dataset(tmp_path, [json.dumps(record)])
    (item,) = evaluate.read_detection_truth(tmp_path)
    assert item.fitzpatrick == 5 and item.boxes.tolist() == [A]
    assert item.ignore_boxes.tolist() == [B, FAR]
