"""evaluate detection: detections on label-3 / 255 regions are neither right nor wrong."""
import json

import numpy as np
import pytest

from lesiontrack import evaluate
from synth import io

# One 64x64 test photo: a malignant blend (label 2), an ignored spot listed nowhere but in the
# label map (255), a real mole of the body photo (label 3) whose box is larger than its
# pixels, and a second real mole that no detection finds.
LESION, MOLE, OTHER_MOLE = [8, 8, 9, 9], [4, 36, 14, 14], [50, 50, 8, 8]


def _write_dataset(root):
    labels = np.zeros((64, 64), np.uint8)
    labels[8:17, 8:17] = io.MALIGNANT
    labels[40:45, 40:45] = io.IGNORE
    labels[42:47, 10:15] = io.UNKNOWN
    labels[51:57, 51:57] = io.UNKNOWN
    paths = io.sample_paths("000000", pair=False)
    io.write_image(root / paths["image"], np.full((64, 64, 3), 180, np.uint8))
    io.write_image(root / paths["labels"], labels)
    io.write_image(root / paths["instances"], (labels > 0).astype(np.uint16))
    record = {"id": "000000", "index": 0, "split": "test", "size": [64, 64], **paths,
              "pair": None,
              "lesions": [{"instance": 1, "label": 2, "malignant": True, "diagnosis": "BCC",
                           "bbox": LESION}],
              "real_lesions": [{"instance": 2, "label": 3, "diagnosis": "unknown",
                                "bbox": MOLE},
                               {"instance": 3, "label": 3, "diagnosis": "unknown",
                                "bbox": OTHER_MOLE}]}
    from conftest import finish_dataset

    return finish_dataset(root, [json.dumps(record)])


def _detection(x, y, score):
    return {"bbox": [x - 3, y - 3, 7, 7], "centroid": [x, y], "score": score,
            "malignancy": 0.9}


# Highest first: on the unlisted 255 spot; in the mole's box on a background pixel (the box
# rule); the hit; plain skin (the only false positive under the new rule).
DETECTIONS = [_detection(42, 42, 0.9), _detection(6, 38, 0.8), _detection(12, 12, 0.7),
              _detection(30, 56, 0.6)]


def _stand_in(*args, **kwargs):
    return lambda image: ([dict(d) for d in DETECTIONS], np.zeros(image.shape[:2]))


def test_detections_on_ignored_and_unknown_regions_are_not_false_positives(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(evaluate, "_fcn_runner", _stand_in)
    monkeypatch.setattr(evaluate, "_baseline_runner", _stand_in)
    root = _write_dataset(tmp_path / "data")
    report = evaluate.evaluate_detection(root, tmp_path / "out", weights="fake",
                                         baseline="fake")
    assert report["counts"]["lesions"] == 1
    # Both methods go through the same counting rule.
    for name in (evaluate.FCN_NAME, evaluate.BASELINE_NAME):
        method = report["methods"][name]
        # Under the rule "every unmatched detection is a false positive" the hit came after
        # two false positives (FROC at 1, 2, 2, 3 FP/image; sensitivity 0 at 0.5 and 1
        # FP/image); now it comes first.
        assert method["froc"]["fp_per_image"] == [0.0, 1.0]
        assert method["froc"]["sensitivity"] == [1.0, 1.0]
        assert method["sensitivity_at_fp"]["0.5"] == 1.0
        assert method["num_detections"] == 4 and method["neutral_detections"] == 2
        assert method["operating_point"] == {"threshold": 0.7, "fp_per_image": 0.0,
                                             "sensitivity": 1.0}
        # One of the two real moles has a detection in its box (score 0.8).
        assert method["real_lesions"] == {
            "lesions": 2, "found_at_operating_point": 1, "recall_at_operating_point": 0.5,
            "threshold": 0.5, "found_at_threshold": 1, "recall_at_threshold": 0.5}
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "not counted" in summary and "own lesions" in summary


def test_score_detections_rule_and_threshold(tmp_path):
    root = _write_dataset(tmp_path / "data")
    items = evaluate.read_detection_truth(root)
    assert items[0].real_lesion_boxes.tolist() == [MOLE, OTHER_MOLE]
    labels = io.read_label_map(items[0].labels)
    rng = np.random.default_rng(0)
    # Only the listed boxes: the detection on the unlisted 255 spot stays a false positive.
    boxes_only = evaluate.score_detections(items, [DETECTIONS], [], [], rng=rng)
    assert boxes_only["neutral_detections"] == 1
    assert boxes_only["froc"]["fp_per_image"] == [1.0, 1.0, 2.0]
    # With the label map both neutral detections go; at threshold 0.85 no mole is found.
    result = evaluate.score_detections(items, [DETECTIONS], [], [], rng=rng,
                                       neutral_maps=[evaluate.neutral_mask(labels)],
                                       threshold=0.85)
    assert result["neutral_detections"] == 2
    assert result["real_lesions"]["recall_at_threshold"] == 0.0
    assert result["real_lesions"]["recall_at_operating_point"] == 0.5
    with pytest.raises(ValueError):
        evaluate.score_detections(items, [DETECTIONS], [], [], rng=rng, neutral_maps=[])
