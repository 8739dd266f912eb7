"""Tracking evaluation: PCK, EPE and lesion matching with known answers, and the CLI."""
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import _smooth_texture, finish_dataset
from lesiontrack import metrics
from lesiontrack.tracking.evaluate import (end_to_end_counts, evaluate_pairs, lesion_identities,
                                           report_markdown)
from lesiontrack.tracking.pairs import TrackingPair, folder_pairs, lesions_from_instances

ALPHAS = (0.01, 0.02, 0.05, 0.1)
SHIFT = (4, -3)  # |shift| = 5 px


def _affine_pair():
    """160x120 texture and its zoom by 1.1 about the centre: flow(p) = 0.1 (p - c).

    Keypoints 10, 30, 50 and 70 px right of the centre: zero flow misses them by 1, 3, 5, 7 px.
    """
    height, width = 120, 160
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    matrix = np.array([[1.1, 0, -0.1 * centre[0]], [0, 1.1, -0.1 * centre[1]]])
    image0 = _smooth_texture(height, width, seed=3)
    image1 = cv2.warpAffine(image0, matrix, (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    flow = (0.1 * np.stack([xx - centre[0], yy - centre[1]], axis=2)).astype(np.float32)
    points0 = centre + np.array([[10, 0], [30, 0], [50, 0], [70, 0]], np.float64)
    points1 = centre + 1.1 * (points0 - centre)
    kind = np.array(["lesion-nevus", "skin", "lesion", "skin"], dtype=object)
    return TrackingPair(name="zoom", image0=image0, image1=image1, points0=points0,
                        points1=points1, kind=kind, instance=np.array([1, 0, 2, 0]),
                        centres1={1: points1[0], 2: points1[2]}, flow=flow,
                        valid=np.ones((height, width), bool)), centre


def test_true_flow_of_an_affine_pair_gives_pck_one_and_epe_zero():
    pair, _ = _affine_pair()
    result = evaluate_pairs([pair], ["true"], alphas=ALPHAS)["true"]
    assert result["pck"] == {"0.01": 1.0, "0.02": 1.0, "0.05": 1.0, "0.1": 1.0}
    assert result["mean_epe"] == 0.0 and result["epe_over"] == "valid pixels of the true flow"
    assert result["lesion_match_accuracy"] == 1.0 and result["lesions"] == 2
    assert result["pairs"] == 1 and result["keypoints"] == 4 and result["failures"] == []


def test_zero_flow_of_an_affine_pair_gives_the_pck_by_hand():
    pair, centre = _affine_pair()
    result = evaluate_pairs([pair], ["zero"], alphas=ALPHAS)["zero"]
    # Errors 1, 3, 5, 7 px; the diagonal is 200 px: tolerances 2, 4, 10, 20 px.
    assert math.hypot(160, 120) == 200
    assert result["pck"] == {"0.01": 0.25, "0.02": 0.5, "0.05": 1.0, "0.1": 1.0}
    yy, xx = np.mgrid[:120, :160]
    dense = 0.1 * np.hypot(xx - centre[0], yy - centre[1]).mean()
    assert result["mean_epe"] == pytest.approx(dense, abs=1e-4)


def test_dis_recovers_most_of_the_zoom():
    pair, _ = _affine_pair()
    result = evaluate_pairs([pair], ["dis", "zero"], alphas=ALPHAS)
    assert result["dis"]["mean_epe"] < 0.5 * result["zero"]["mean_epe"]
    assert result["dis"]["seconds_per_pair"] >= 0


def test_a_failing_method_is_reported_and_the_others_go_on(monkeypatch):
    pair, _ = _affine_pair()
    pair.flow = None  # no dense truth: "true" is skipped, EPE over the keypoints
    result = evaluate_pairs([pair], ["true", "zero"], alphas=ALPHAS)
    assert result["true"] == {"skipped": "no dense true flow"}
    assert result["zero"]["mean_epe"] == pytest.approx(4.0)  # mean of 1, 3, 5, 7
    assert result["zero"]["epe_over"] == "keypoints"


# --------------------------------------------------------------------------- real pairs


def _write_real_pairs(folder):
    """Pair "zoom" as PNG + TIFF with lesion-nevus rows, and pair "b" as JPEG."""
    pair, _ = _affine_pair()
    folder.mkdir(parents=True, exist_ok=True)
    from synth import io

    io.write_image(folder / "zoom_t0.png", pair.image0)
    io.write_image(folder / "zoom_t1.tif", pair.image1)
    io.write_image(folder / "b_t0.jpg", pair.image0)
    io.write_image(folder / "b_t1.jpg", pair.image0)
    rows = ["pair,x0,y0,x1,y1,kind"]
    rows += [f"zoom,{p[0]},{p[1]},{q[0]},{q[1]},{k}"
             for p, q, k in zip(pair.points0, pair.points1, pair.kind)]
    rows += ["b,20,20,20,20,Lesion", "b,60,30,60,30,skin"]
    (folder / "keypoints.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_real_pairs_any_suffix_and_lesion_kinds(tmp_path):
    pairs = folder_pairs(_write_real_pairs(tmp_path / "real"))
    assert [p.name for p in pairs] == ["b", "zoom"]
    zoom = pairs[1]
    assert zoom.image0.shape == (120, 160, 3) and zoom.image1.shape == (120, 160, 3)
    np.testing.assert_array_equal(zoom.lesion, [True, False, True, False])
    np.testing.assert_array_equal(zoom.instance, [1, 0, 2, 0])
    assert sorted(zoom.centres1) == [1, 2] and zoom.flow is None
    np.testing.assert_array_equal(pairs[0].instance, [1, 0])  # "Lesion": any case


def test_real_pairs_report_the_keypoint_epe(tmp_path):
    pairs = folder_pairs(_write_real_pairs(tmp_path / "real"))
    result = evaluate_pairs(pairs, ["zero"], alphas=ALPHAS)["zero"]
    # Pair b: identical photos, zero error at 2 keypoints; zoom: 1, 3, 5, 7 px (mean 4).
    assert result["mean_epe"] == pytest.approx((0.0 + 4.0) / 2)
    assert result["epe_over"] == "keypoints"
    assert result["pck"]["0.01"] == pytest.approx(3 / 6)
    assert result["lesion_match_accuracy"] == 1.0 and result["lesions"] == 3


@pytest.mark.parametrize("problem, text, message", [
    ("columns", "pair,x0,y0\n", "missing columns"),
    ("numbers", "pair,x0,y0,x1,y1,kind\nzoom,a,1,2,3,skin\n", "line 2: coordinates are not"),
    ("image", "pair,x0,y0,x1,y1,kind\nnone,1,1,2,3,skin\n", "no image none_t0"),
])
def test_real_pairs_bad_input_names_the_file(tmp_path, problem, text, message):
    from synth.io import InputError

    folder = _write_real_pairs(tmp_path / problem)
    (folder / "keypoints.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        folder_pairs(folder)


# --------------------------------------------------------------------------- end to end


def test_lesion_identities_by_centroid_in_box():
    instances = np.zeros((40, 60), np.uint16)
    instances[5:15, 5:15] = 3
    instances[20:30, 40:50] = 7
    detections = [{"id": 1, "centroid": [9.0, 9.0], "score": 0.6},
                  {"id": 2, "centroid": [10.0, 10.0], "score": 0.9},  # same lesion, higher
                  {"id": 3, "centroid": [45.0, 25.0], "score": 0.5},
                  {"id": 4, "centroid": [30.0, 35.0], "score": 0.8}]  # on skin
    assert lesion_identities(detections, instances) == {1: 0, 2: 3, 3: 7, 4: 0}
    assert [l["id"] for l in lesions_from_instances(instances)] == [3, 7]
    assert lesions_from_instances(instances)[0]["bbox"] == [5, 5, 10, 10]


def test_end_to_end_counts_by_hand():
    # True lesions 1-4 in both visits, 5 only at t0. Detected in both: 1, 2, 3 (4 only at t0).
    identity0 = {10: 1, 11: 2, 12: 3, 13: 4, 14: 0, 15: 5}
    identity1 = {20: 1, 21: 2, 22: 3, 23: 0}
    matches = [{"id0": 10, "id1": 20},   # 1 -> 1 right
               {"id0": 11, "id1": 22},   # 2 -> 3 wrong
               {"id0": 14, "id1": 21},   # false positive -> 2: wrong, counted
               {"id0": 13, "id1": 23},   # 4 (not detected at t1) -> false positive: not counted
               {"id0": 15, "id1": 23}]   # 5 -> false positive: not counted
    counts = end_to_end_counts(matches, identity0, identity1, {1, 2, 3, 4})
    assert counts == {"lesions": 4, "detected": 3, "matches": 3, "right": 1, "tracked": 1}


# --------------------------------------------------------------------------- CLI


def write_lesion_pair_dataset(root, *, count=3, size=(96, 80)):
    """Pairs of a smooth texture shifted by SHIFT with 3 disk lesions at t0; lesion 3 is gone
    at t1 and lesion 4 new. The first ``count - 1`` samples are "test", the last "train"."""
    from synth import io

    root = Path(root)
    width, height = size
    dx, dy = SHIFT
    yy, xx = np.mgrid[:height + 16, :width + 16]
    lines = []
    for index in range(count):
        sample_id = f"{index:06d}"
        big = _smooth_texture(height + 16, width + 16, seed=index)
        big_instances = np.zeros(big.shape[:2], np.uint16)
        for instance, (cx, cy, r) in enumerate([(28, 28, 6), (68, 40, 7), (40, 66, 5)], start=1):
            inside = (xx - cx - 8) ** 2 + (yy - cy - 8) ** 2 <= r ** 2
            big[inside] = (70 + 30 * instance, 40, 35)
            big_instances[inside] = instance
        image0, instances0 = big[8:8 + height, 8:8 + width], big_instances[8:8 + height, 8:8 + width]
        window = (slice(8 - dy, 8 - dy + height), slice(8 - dx, 8 - dx + width))
        image1, instances1 = big[window].copy(), big_instances[window].copy()
        instances1[instances1 == 3] = 0
        image1[70:76, 10:16] = (60, 30, 30)
        instances1[70:76, 10:16] = 4
        paths = io.sample_paths(sample_id, pair=True)
        io.write_image(root / paths["image"], np.ascontiguousarray(image0))
        io.write_image(root / paths["labels"], (instances0 > 0).astype(np.uint8))
        io.write_image(root / paths["instances"], np.ascontiguousarray(instances0))
        io.write_image(root / paths["pair"]["image"], image1)
        io.write_image(root / paths["pair"]["labels"], (instances1 > 0).astype(np.uint8))
        io.write_image(root / paths["pair"]["instances"], instances1)
        io.write_flo(root / paths["pair"]["flow"],
                     np.tile(np.array(SHIFT, np.float32), (height, width, 1)))
        io.write_image(root / paths["pair"]["valid"], np.full((height, width), 255, np.uint8))
        lines.append(json.dumps({"id": sample_id, "index": index,
                                 "split": "test" if index < count - 1 else "train",
                                 "size": [width, height], **paths, "lesions": []}))
    return finish_dataset(root, lines)


@pytest.fixture(scope="module")
def lesion_pairs(tmp_path_factory):
    return write_lesion_pair_dataset(tmp_path_factory.mktemp("lesion_pairs"))


def test_cli_evaluate_tracking_end_to_end(lesion_pairs, tmp_path, tiny_detector_path):
    from lesiontrack.cli import main

    out = tmp_path / "report"
    result = CliRunner().invoke(main, [
        "evaluate", "tracking", str(lesion_pairs), "--methods", "true,zero,dis", "--out",
        str(out), "--detector-weights", str(tiny_detector_path), "--skin", "20"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    section = report["sets"][str(lesion_pairs)]
    assert section["pairs"] == 2  # the test split only
    true, zero = section["methods"]["true"], section["methods"]["zero"]
    assert set(true["pck"].values()) == {1.0} and true["mean_epe"] == 0.0
    # Lesion 3 is gone at t1: it has no t1 centre to be nearest to (2 of 3 lesions per pair).
    assert true["lesion_match_accuracy"] == pytest.approx(4 / 6, abs=1e-4) and true["lesions"] == 6
    # Lesions 1 and 2 are in both visits of each pair: the true flow pairs them all.
    assert true["match_accuracy"] == 1.0
    # Zero flow misses every keypoint by 5 px; the diagonal is 124.96 px.
    assert zero["pck"] == {"0.01": 0.0, "0.02": 0.0, "0.05": 1.0, "0.1": 1.0}
    assert zero["mean_epe"] == pytest.approx(5.0, abs=1e-3)
    end_to_end = true["end_to_end"]
    assert end_to_end["lesions"] == 4 and 0 <= end_to_end["tracked"] <= end_to_end["detected"]
    assert section["methods"]["dis"]["mean_epe"] < 5.0
    for name in ("report.md", "report.json", "pck.png"):
        assert (out / name).is_file()
    assert "| true | 1.000 | 1.000 | 1.000 | 1.000 | 0.0 | 0.667 | 1.000 |" in result.output
    assert not list(out.glob(".tmp-*"))
    # stderr is not a terminal here: plain progress lines, no carriage-return redraws.
    assert "\r" not in result.output and "pairs: 6/6 run (100%)" in result.output


def test_cli_evaluate_tracking_bad_input(tmp_path):
    from lesiontrack.cli import main

    runner = CliRunner()
    missing = runner.invoke(main, ["evaluate", "tracking", str(tmp_path / "none"), "--out",
                                   str(tmp_path / "out"), "--methods", "zero"])
    assert missing.exit_code == 1 and missing.output.strip().endswith("no such folder")
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(main, ["evaluate", "tracking", str(tmp_path / "empty"), "--out",
                                 str(tmp_path / "out"), "--methods", "zero"])
    assert empty.exit_code == 1 and "keypoints.csv" in empty.output
    unknown = runner.invoke(main, ["evaluate", "tracking", str(tmp_path / "empty"), "--out",
                                   str(tmp_path / "out"), "--methods", "zero,magic"])
    assert unknown.exit_code == 2 and "magic" in unknown.output
    assert not (tmp_path / "out").exists()


def test_report_markdown_shows_skipped_and_missing_figures():
    report = {"alphas": [0.05], "threshold": 0.5, "sets": {"s": {"pairs": 1, "methods": {
        "net": {"skipped": "tracker unavailable"},
        "zero": {"pck": {"0.05": 0.5}, "mean_epe": None, "epe_over": None,
                 "lesion_match_accuracy": None, "match_accuracy": None, "end_to_end": None,
                 "seconds_per_pair": 0.0, "failures": []}}}}}
    text = report_markdown(report)
    assert "| net | skipped: tracker unavailable |" in text
    assert "| zero | 0.500 | - | - | - | - | - | 0.00 | 0 |" in text


def test_max_diagonal_reaches_the_network(lesion_pairs, tmp_path, monkeypatch):
    from lesiontrack.tracking import infer
    from lesiontrack.tracking.evaluate import evaluate_tracking

    seen = []

    def fake_predict_flow(image0, image1, *, weights="default", **options):
        seen.append(options.get("max_diagonal"))
        return np.zeros(image0.shape[:2] + (2,), np.float32)

    monkeypatch.setattr(infer, "predict_flow", fake_predict_flow)
    report = evaluate_tracking(lesion_pairs, tmp_path / "a", methods=["net"], n_skin=5,
                               detector_weights=None, max_diagonal=300)
    assert seen == [300.0, 300.0] and report["max_diagonal"] == 300
    seen.clear()
    evaluate_tracking(lesion_pairs, tmp_path / "b", methods=["net"], n_skin=5, detector_weights=None)
    assert seen == [None, None]
