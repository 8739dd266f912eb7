"""synth.procedural.lesions: procedural lesion crops."""
import json

import cv2
import numpy as np
import pytest

from synth import procedural


def _shape_measures(mask):
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    area = cv2.contourArea(contour)
    solidity = area / cv2.contourArea(cv2.convexHull(contour))
    circularity = 4 * np.pi * area / cv2.arcLength(contour, True) ** 2
    return solidity, circularity


@pytest.mark.parametrize("malignant", [False, True])
def test_lesion_crop_black_outside_mask(malignant):
    image, mask, metadata = procedural.procedural_lesion(
        rng=np.random.default_rng(3), malignant=malignant, diameter_px=40
    )
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert mask.dtype == bool and mask.shape == image.shape[:2]
    assert mask.sum() > 0.5 * np.pi * 20**2
    assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()
    assert (image[~mask] == 0).all()
    assert image[mask].mean() > 20
    assert metadata["malignant"] is malignant
    json.dumps(metadata)


def test_malignant_more_irregular_than_benign():
    measures = {}
    for malignant in (False, True):
        rng = np.random.default_rng(7)
        values = [_shape_measures(procedural.procedural_lesion(rng=rng, malignant=malignant, diameter_px=64)[1])
                  for _ in range(20)]
        measures[malignant] = np.mean(values, axis=0)
    assert measures[True][0] < measures[False][0]  # solidity
    assert measures[True][1] < measures[False][1]  # circularity
    assert measures[False][1] > 0.8


def test_malignant_has_more_colours():
    rng = np.random.default_rng(8)
    benign = [len(procedural.procedural_lesion(rng=rng, malignant=False, diameter_px=32)[2]["colours"]) for _ in range(10)]
    malignant = [len(procedural.procedural_lesion(rng=rng, malignant=True, diameter_px=32)[2]["colours"]) for _ in range(10)]
    assert max(benign) == 1 and min(malignant) >= 2


def test_lesion_records_and_render_deterministic():
    records = procedural.procedural_lesion_records(12, seed=3)
    assert records == procedural.procedural_lesion_records(12, seed=3)
    json.dumps(records)
    assert len({r["id"] for r in records}) == 12
    assert {r["diagnosis"] for r in records} <= {"procedural-benign", "procedural-malignant"}
    assert len({r["patient"] for r in records}) == 6  # two lesions per patient by default
    for record in records:
        assert record["diagnosis"] == ("procedural-malignant" if record["malignant"] else "procedural-benign")
        assert 1 <= record["fitzpatrick"] <= 6 and record["diameter_mm"] > 0
    image, mask, metadata = procedural.render_procedural_lesion(records[0], seed=1)
    again, mask_again, _ = procedural.render_procedural_lesion(records[0], seed=1)
    assert np.array_equal(image, again) and np.array_equal(mask, mask_again)
    assert max(image.shape[:2]) <= 256
    assert metadata["id"] == records[0]["id"]
    different, _, _ = procedural.render_procedural_lesion(records[0], seed=2)
    assert different.shape != image.shape or not np.array_equal(different, image)
