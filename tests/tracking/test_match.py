"""Lesion matching between visits: assignment, change flags, drawing, CLI."""
import json

import cv2
import numpy as np
import pytest

from lesiontrack.tracking import match as match_module
from lesiontrack.tracking.match import (assign, draw_matches, lesion_colours, local_area_scale,
                                        match_lesions)

SHIFT = (10.0, 5.0)
SKIN = (205, 165, 145)
MOLE = (110, 70, 55)


def _lesion(identifier, cx, cy, radius):
    return {"id": identifier, "bbox": [cx - radius, cy - radius, 2 * radius + 1, 2 * radius + 1],
            "centroid": [float(cx), float(cy)], "area_px": float(np.pi * radius ** 2),
            "score": 0.9, "malignancy": 0.2, "label": "benign"}


def _draw(lesions, size=(240, 200), colours=None):
    width, height = size
    image = np.zeros((height, width, 3), np.uint8) + np.array(SKIN, np.uint8)
    for lesion in lesions:
        x, y, w, _ = lesion["bbox"]
        colour = (colours or {}).get(lesion["id"], MOLE)
        cv2.circle(image, (int(x + w // 2), int(y + w // 2)), int(w // 2), colour, -1)
    return image


@pytest.fixture(scope="module")
def visits():
    """t0: A, B, C, D, P, Q; t1 = t0 moved by SHIFT, with B grown, C gone, E new.

    P and Q lie 14 px apart, so carried positions alone are ambiguous by a few pixels.
    """
    dx, dy = int(SHIFT[0]), int(SHIFT[1])
    lesions0 = [_lesion(1, 50, 50, 6), _lesion(2, 120, 80, 6), _lesion(3, 60, 150, 5),
                _lesion(4, 190, 40, 5), _lesion(5, 150, 150, 4), _lesion(6, 164, 150, 4)]
    lesions1 = [_lesion(11, 50 + dx, 50 + dy, 6), _lesion(12, 120 + dx, 80 + dy, 10),
                _lesion(14, 190 + dx, 40 + dy, 5), _lesion(15, 150 + dx, 150 + dy, 4),
                _lesion(16, 164 + dx, 150 + dy, 4), _lesion(17, 100, 175, 6)]
    image0, image1 = _draw(lesions0), _draw(lesions1)
    flow = np.tile(np.array(SHIFT, np.float32), (200, 240, 1))
    return image0, image1, flow, lesions0, lesions1


def test_match_recovers_pairs_and_changes(visits):
    image0, image1, flow, lesions0, lesions1 = visits
    result = match_lesions(image0, image1, flow=flow, lesions0=lesions0, lesions1=lesions1)
    pairs = {m["id0"]: m["id1"] for m in result["matches"]}
    assert pairs == {1: 11, 2: 12, 4: 14, 5: 15, 6: 16}
    changed = {m["id0"]: m["changes"] for m in result["matches"] if m["changed"]}
    assert changed == {2: ["grown"]}
    grown = next(m for m in result["matches"] if m["id0"] == 2)
    assert grown["area_ratio"] == pytest.approx((10 / 6) ** 2, rel=1e-4)
    assert grown["local_scale"] == pytest.approx(1.0)
    assert [g["id"] for g in result["gone"]] == [3] and not result["gone"][0]["out_of_view"]
    assert [n["id"] for n in result["new"]] == [17]
    same = next(m for m in result["matches"] if m["id0"] == 1)
    assert same["distance_px"] == 0 and same["confidence"] == pytest.approx(1.0)
    assert same["carried"] == [60.0, 55.0]
    json.dumps(result)  # JSON-serialisable as written by the CLI


def test_gate_rejects_far_pairs(visits):
    image0, image1, _, lesions0, lesions1 = visits
    zero = np.zeros(image0.shape[:2] + (2,), np.float32)
    # Without the flow the true pairs are 11.2 px apart, beyond a 10 px gate (0.032 x 312):
    # only the wrong pair Q -> P' (6.4 px) is left, which is why the flow matters.
    result = match_lesions(image0, image1, flow=zero, lesions0=lesions0, lesions1=lesions1,
                           max_distance=0.032)
    assert {m["id0"]: m["id1"] for m in result["matches"]} == {6: 15}
    assert len(result["gone"]) == 5 and len(result["new"]) == 5


def test_colour_change_flagged(visits):
    image0, _, flow, lesions0, lesions1 = visits
    image1 = _draw(lesions1, colours={14: (40, 20, 20)})
    result = match_lesions(image0, image1, flow=flow, lesions0=lesions0, lesions1=lesions1)
    darker = next(m for m in result["matches"] if m["id0"] == 4)
    assert darker["changes"] == ["colour"] and darker["colour_change"] > 12


def test_assign_is_globally_optimal():
    # Greedy nearest-first would give carried 0 -> t1 0 (1 px) and leave carried 1 beyond the
    # gate; the assignment pairs 0 -> 1 and 1 -> 0 (both 5 px).
    carried = np.array([[0.0, 0.0], [6.0, 0.0]])
    centroids1 = np.array([[1.0, 0.0], [-5.0, 0.0]])
    zeros = np.zeros((2, 3))
    pairs = assign(carried, centroids1, zeros, zeros, gate=6.0)
    assert [(i, j) for i, j, *_ in pairs] == [(0, 1), (1, 0)]
    assert assign(carried[:0], centroids1, zeros[:0], zeros, gate=6.0) == []


def test_local_area_scale_of_a_zoom():
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float32)
    flow = np.stack([0.2 * (xs - 32), 0.2 * (ys - 32)], -1)
    np.testing.assert_allclose(local_area_scale(flow, [[32, 32], [10, 50]]), 1.44, rtol=1e-6)


def test_lesion_colours_relative_to_skin():
    lesion = _lesion(1, 30, 30, 8)
    image = _draw([lesion], size=(60, 60))
    brighter = np.clip(image.astype(int) + 20, 0, 255).astype(np.uint8)
    a, b = lesion_colours(image, [lesion]), lesion_colours(brighter, [lesion])
    assert a[0, 0] < -20  # darker than the skin
    assert np.linalg.norm(a - b) < 3  # a global brightness change barely moves the contrast


def test_draw_matches(visits):
    image0, image1, flow, lesions0, lesions1 = visits
    result = match_lesions(image0, image1, flow=flow, lesions0=lesions0, lesions1=lesions1)
    canvas = draw_matches(image0, image1[:150], result)
    assert canvas.dtype == np.uint8 and canvas.shape[0] == 200 and canvas.shape[1] > 480
    colours = {tuple(c) for c in canvas.reshape(-1, 3)}
    for colour in (match_module.MATCH_COLOUR, match_module.CHANGED_COLOUR,
                   match_module.GONE_COLOUR, match_module.NEW_COLOUR):
        assert colour in colours


def test_package_exports_match_as_a_function(visits):
    import types

    import lesiontrack

    assert lesiontrack.match is match_lesions and isinstance(match_module, types.ModuleType)
    assert type(match_module) is types.ModuleType  # a plain module, not made callable
    image0, image1, flow, lesions0, lesions1 = visits
    result = lesiontrack.match(image0, image1, flow=flow, lesions0=lesions0, lesions1=lesions1)
    assert len(result["matches"]) == 5


def test_match_command(visits, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from lesiontrack.detection import detect as detect_module
    from lesiontrack.tracking import flow as flow_module
    from lesiontrack.cli import main
    from synth.io import write_image

    image0, image1, flow, lesions0, lesions1 = visits
    write_image(tmp_path / "t0.png", image0)
    write_image(tmp_path / "t1.png", image1)
    found = {id(None): None}

    def fake_detect(image, *, model=None, threshold=0.5, **options):
        return lesions0 if np.array_equal(image, image0) else lesions1

    monkeypatch.setattr(detect_module, "load_detector", lambda weights="default": found)
    monkeypatch.setattr(detect_module, "detect", fake_detect)
    monkeypatch.setattr(flow_module, "estimate_flow", lambda a, b, method, **options: flow)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["match", str(tmp_path / "t0.png"), str(tmp_path / "t1.png"),
                                       "--out", str(out), "--method", "dis"])
    assert result.exit_code == 0, result.output
    assert "5 matched (1 changed), 1 gone, 1 new" in result.output
    written = json.loads((out / "match.json").read_text())
    assert written["method"] == "dis" and len(written["matches"]) == 5
    assert (out / "match.png").is_file()


def test_match_command_missing_photo(tmp_path):
    from click.testing import CliRunner

    from lesiontrack.cli import main

    result = CliRunner().invoke(main, ["match", str(tmp_path / "no.jpg"), str(tmp_path / "no.jpg"),
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "no such file" in result.output
