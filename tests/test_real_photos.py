"""Real-photo evaluation: lesions.csv truth, the matching rule, per-photo rows, the CLI mode."""
import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from lesiontrack import evaluate, metrics, real_photos
from lesiontrack.cli import main
from synth.io import InputError, read_image, write_image, write_json

HEADER = "tile,x,y,radius_px,label,note\n"


# --------------------------------------------------------------------------- matching rule


@pytest.mark.parametrize("box, centroid, centre, radius, expected", [
    ([10, 10, 10, 10], [15, 15], [15, 15], 3, True),    # centre in box, centroid on it
    ([10, 10, 10, 10], [50, 50], [20, 20], 3, True),    # centre on the box edge
    ([10, 10, 10, 10], [50, 50], [21, 15], 3, False),   # one pixel outside, centroid far
    ([0, 0, 2, 2], [1, 1], [8, 1], 3, True),            # centroid at exactly radius + 4
    ([0, 0, 2, 2], [1, 1], [8.01, 1], 3, False),        # just beyond radius + 4
    ([0, 0, 2, 2], [1, 1], [1, 13], 8, True),           # a larger radius reaches further
])
def test_detections_on_annotations_table(box, centroid, centre, radius, expected):
    on = metrics.detections_on_annotations([box], [centroid], [centre], [radius])
    assert on.shape == (1, 1) and bool(on[0, 0]) is expected


def test_detections_on_annotations_shapes_and_errors():
    assert metrics.detections_on_annotations(np.zeros((0, 4)), np.zeros((0, 2)), [[1, 1]],
                                             [2]).shape == (0, 1)
    assert metrics.detections_on_annotations([[0, 0, 1, 1]], [[0, 0]], np.zeros((0, 2)),
                                             []).shape == (1, 0)
    with pytest.raises(ValueError):
        metrics.detections_on_annotations([[0, 0, 1, 1]], np.zeros((0, 2)), [[1, 1]], [2])


def test_ambiguous_annotations_are_neutral():
    # Annotations: clear, clear, ambiguous. Detections: on clear 0 and the ambiguous one, on
    # the ambiguous one only, on nothing.
    on = np.array([[True, False, True], [False, False, True], [False, False, False]])
    found, outcome = metrics.partial_annotation_outcome(on, [True, True, False])
    assert found.tolist() == [True, False, True]
    assert outcome.tolist() == [metrics.TRUE_DETECTION, metrics.NEUTRAL_DETECTION,
                                metrics.FALSE_DETECTION]


# --------------------------------------------------------------------------- per-photo rows


def _photo_folder(root, rows, photos=("a", "b"), header=HEADER):
    root.mkdir(parents=True, exist_ok=True)
    for name in photos:
        write_image(root / f"{name}.png", np.full((64, 80, 3), 180, np.uint8))
    (root / "lesions.csv").write_text(header + "".join(rows))
    return root


ROWS = ["a,10,10,3,lesion,dark mole\n", "a,40,40,4,lesion,\n", "a,60,20,3,ambiguous,faint\n"]


def _detection(x, y, w=4, h=4, score=0.9):
    return {"id": 1, "bbox": [x, y, w, h], "centroid": [x + w / 2, y + h / 2], "score": score,
            "malignancy": 0.2, "label": "benign", "area_px": w * h}


def _stub_runner(by_shape=None):
    """Detections per photo, told apart by the photo's mean grey level."""
    def run(image):
        level = int(image.mean())
        return [dict(d) for d in (by_shape or {}).get(level, [])], None
    return run


def test_score_photo_rows_and_totals(tmp_path):
    truths = real_photos.read_photo_truth(_photo_folder(tmp_path / "photos", ROWS))
    assert [t.name for t in truths] == ["a", "b"]
    assert truths[0].clear.tolist() == [True, True, False] and len(truths[1].radii) == 0
    # On a: one on the first clear lesion, one on the ambiguous one, one on bare skin.
    lesions_a = [_detection(8, 8), _detection(58, 18), _detection(30, 55)]
    row, found, outcome = real_photos.score_photo(truths[0], lesions_a)
    assert found.tolist() == [True, False, True]
    assert outcome.tolist() == [1, 0, -1]
    assert {k: row[k] for k in ("clear", "clear_found", "ambiguous", "ambiguous_found",
                                "detections", "true_positives", "neutral",
                                "false_positives")} == {
        "clear": 2, "clear_found": 1, "ambiguous": 1, "ambiguous_found": 1, "detections": 3,
        "true_positives": 1, "neutral": 1, "false_positives": 1}
    assert row["recall"] == 0.5 and row["precision"] == 0.5
    # b has no annotated lesion: its one detection is a false positive, recall undefined.
    row_b, _, _ = real_photos.score_photo(truths[1], [_detection(5, 5)])
    assert row_b["recall"] is None and row_b["precision"] == 0.0
    totals = real_photos.summarise_photos([row, row_b])
    assert totals["recall_clear"] == 0.5
    assert totals["precision"] == pytest.approx(1 / 3)
    assert totals["fp_per_photo"] == 1.0 and totals["detections_per_photo"] == 2.0


def test_evaluate_photos_writes_overlays(tmp_path):
    truths = real_photos.read_photo_truth(_photo_folder(tmp_path / "photos", ROWS))
    result = real_photos.evaluate_photos(truths, _stub_runner({180: [_detection(38, 38)]}),
                                         method="FCN", overlay_dir=tmp_path / "out")
    assert [row["photo"] for row in result["photos"]] == ["a", "b"]
    assert result["clear_found"] == 1 and result["true_positives"] == 1
    assert result["false_positives"] == 1  # the same box on b, which has no lesion
    for name in ("a", "b"):
        overlay = read_image(tmp_path / "out" / f"{name}_overlay.png")
        band = overlay.shape[0] - 64
        assert overlay.shape[1:] == (80, 3) and 0 < band < 40
    # Photo a: the right box at (38, 38) is green, the missed clear lesion at (10, 10) magenta.
    photo = read_image(tmp_path / "out" / "a_overlay.png")[band:]
    assert tuple(photo[40, 37]) == real_photos.RIGHT_COLOUR  # left edge of the box
    around_missed = photo[:20, :20].reshape(-1, 3).astype(int)
    assert (np.abs(around_missed - real_photos.MISSED_COLOUR).sum(axis=1) < 60).any()
    assert not (np.abs(around_missed - real_photos.RIGHT_COLOUR).sum(axis=1) < 60).any()


def test_truth_from_boxes():
    truth = real_photos.truth_from_boxes("p", "p.jpg", [[10, 20, 6, 10]], [[0, 0, 4, 4]])
    assert truth.centres.tolist() == [[13, 25], [2, 2]]
    assert truth.radii.tolist() == [5, 2] and truth.clear.tolist() == [True, False]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("content, message", [
    ("tile,x,y,label\na,1,2,lesion\n", "missing column(s) radius_px"),
    ("", "missing column(s) tile, x, y, radius_px"),
    (HEADER + "a,1,two,3,lesion,\n", "line 2: x, y and radius_px must be numbers"),
    (HEADER + "a,1,2,-3,lesion,\n", "line 2: x, y must be finite and radius_px >= 0"),
    (HEADER + "a,1,2,3,mole,\n", "line 2: label 'mole' is neither"),
    (HEADER + "a,1,2\n", "line 2: expected one value per column"),
    (HEADER + "zz,1,2,3,lesion,\n", "no photo named zz"),
])
def test_lesions_csv_errors(tmp_path, content, message):
    folder = _photo_folder(tmp_path / "photos", [], header=content)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        real_photos.read_photo_truth(folder)
    assert "lesions.csv" in str(error.value) and "\n" not in str(error.value)


def test_unreadable_csv(tmp_path):
    folder = _photo_folder(tmp_path / "photos", [])
    (folder / "lesions.csv").write_bytes(b"\xff\xd8\xff\xe0 binary \x00\x81")
    with pytest.raises(InputError, match="lesions.csv: not a"):
        real_photos.read_lesions_csv(folder / "lesions.csv")


def test_no_label_column_means_clear(tmp_path):
    folder = _photo_folder(tmp_path / "photos", ["a,1,2,3\n"], header="tile,x,y,radius_px\n")
    assert real_photos.read_lesions_csv(folder / "lesions.csv") == {"a": [(1.0, 2.0, 3.0, True)]}


def _splits(root, bodies):
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "splits.json", {"fractions": [0.7, 0.15, 0.15], "patients": {},
                                      "bodies": bodies})
    return root


def test_split_body_photos(tmp_path):
    dataset = _splits(tmp_path / "ds", {"a": "train", "b": "test", "c": "test"})
    assert real_photos.split_body_photos(dataset, "test") == ["b", "c"]
    with pytest.raises(InputError, match="no body photos in split 'val'"):
        real_photos.split_body_photos(dataset, "val")
    with pytest.raises(InputError, match="splits.json: no such file"):
        real_photos.split_body_photos(tmp_path, "test")
    folder = _photo_folder(tmp_path / "photos", ROWS)
    assert [t.name for t in real_photos.read_photo_truth(folder, names=["b"])] == ["b"]
    with pytest.raises(InputError, match="no photo named c"):
        real_photos.read_photo_truth(folder, names=["b", "c"])


# --------------------------------------------------------------------------- command


@pytest.fixture
def stub_fcn(monkeypatch):
    thresholds = []

    def runner(weights, *, threshold=0.05, **graders):
        thresholds.append(threshold)
        return _stub_runner({180: [_detection(8, 8), _detection(30, 55)]})

    monkeypatch.setattr(evaluate, "_fcn_runner", runner)
    return thresholds


def test_cli_real_photos_of_a_split(tmp_path, stub_fcn):
    folder = _photo_folder(tmp_path / "photos", ROWS, photos=("a", "b", "c"))
    dataset = _splits(tmp_path / "ds", {"a": "test", "b": "train", "c": "test"})
    out = tmp_path / "runs" / "eval"
    result = CliRunner().invoke(main, ["evaluate", "detection", str(folder), "--bodies-of",
                                       str(dataset), "--split", "test", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert stub_fcn == [0.5]  # the default threshold of lesiontrack detect
    assert "recall clear" in result.output
    assert "2 photos, 2 clear lesions, 1 ambiguous; detection threshold 0.5" in result.output
    assert "| FCN | 0.500 (1/2) | 0.250 (1/4) | 1.50 | 2.00 | 0/1 |" in result.output
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["split"] == "test" and stored["bodies_of"] == str(dataset)
    fcn = stored["real_photos"]["methods"]["FCN"]
    assert [row["photo"] for row in fcn["photos"]] == ["a", "c"]
    assert fcn["num_photos"] == 2 and fcn["clear"] == 2 and fcn["clear_found"] == 1 and fcn["recall_clear"] == 0.5
    assert fcn["true_positives"] == 1 and fcn["false_positives"] == 3
    assert fcn["precision"] == 0.25 and fcn["fp_per_photo"] == 1.5
    with open(out / "photos.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["photo"], r["clear_found"], r["false_positives"]) for r in rows] == [
        ("a", "1", "1"), ("c", "0", "2")]
    assert sorted(p.name for p in out.glob("*_overlay.png")) == ["a_overlay.png",
                                                                 "c_overlay.png"]


@pytest.mark.parametrize("case", ["missing column", "missing photo", "dataset and bodies-of",
                                  "bad photo", "fails while running"])
def test_cli_real_photo_errors_leave_no_folder(tmp_path, monkeypatch, stub_fcn, case):
    folder = _photo_folder(tmp_path / "photos", ROWS)
    extra, expected = [], None
    if case == "missing column":
        (folder / "lesions.csv").write_text("tile,x,y\na,1,2\n")
        expected = "missing column(s) radius_px"
    elif case == "missing photo":
        extra = ["--bodies-of", str(_splits(tmp_path / "ds", {"a": "test", "z": "test"}))]
        expected = "no photo named z"
    elif case == "dataset and bodies-of":
        from conftest import write_tiny_dataset
        folder = write_tiny_dataset(tmp_path / "tiny")
        extra = ["--bodies-of", str(folder)]
        expected = "--bodies-of selects photos of a photo folder"
    elif case == "bad photo":
        (folder / "b.png").write_bytes(b"not a png")
        expected = "b.png"
    else:
        def failing(weights, *, threshold=0.05, **graders):
            def run(image):
                raise InputError("weights.keras: not a model file")
            return run
        monkeypatch.setattr(evaluate, "_fcn_runner", failing)
        expected = "weights.keras: not a model file"
    out = tmp_path / "runs" / "eval"
    result = CliRunner().invoke(main, ["evaluate", "detection", str(folder), *extra,
                                       "--out", str(out)])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and expected in lines[-1], result.output
    assert "Traceback" not in result.output
    assert not out.exists() and not (tmp_path / "runs").exists()
