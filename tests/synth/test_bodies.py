"""Tests for synth.bodies: body folder layout, box sources, loading."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from synth.bodies import DEFAULT_MM_PER_PX, load_body, read_body_library
from synth.io import InputError, write_image

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _body(rng, size=(120, 160)):
    height, width = size
    image = np.clip(rng.normal((40, 60, 140), 6, (height, width, 3)), 0, 255)
    image[:, 40:] = np.clip(rng.normal((224, 172, 150), 4, (height, width - 40, 3)), 0, 255)
    image = image.astype(np.uint8)
    cv2.circle(image, (100, 60), 5, (110, 70, 55), -1)
    return image


@pytest.fixture
def body_folder(tmp_path, rng):
    for name in ("a", "b", "c"):
        write_image(tmp_path / f"{name}.jpg", _body(rng))
    (tmp_path / "empty.jpg").write_bytes(b"")
    skin = np.zeros((120, 160), np.uint8)
    skin[:, 40:] = 255
    write_image(tmp_path / "skin" / "b.png", skin)
    (tmp_path / "bodies.csv").write_text("name,mm_per_px\nb.jpg,0.25\n")
    coco = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 160, "height": 120}],
        "annotations": [{"id": 1, "image_id": 7, "bbox": [90, 50, 20, 20], "category_id": 1}],
        "categories": [{"id": 1, "name": "lesion"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "b.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    (tmp_path / "lesions.csv").write_text("tile,x,y,radius_px,label,note\nc,100,60,6,lesion,mole\n")
    return tmp_path


def test_read_body_library(body_folder):
    library = read_body_library(body_folder)
    records = {r.name: r for r in library.records}
    assert sorted(records) == ["a", "b", "c"]
    assert library.skipped == [(str(body_folder / "empty.jpg"), "empty file")]
    assert records["a"].boxes == ((90.0, 50.0, 20.0, 20.0),)
    assert records["b"].boxes == ((60.0, 30.0, 40.0, 60.0),)
    assert records["c"].boxes == ((94.0, 54.0, 12.0, 12.0),)
    assert records["b"].mm_per_px == 0.25 and records["a"].mm_per_px == DEFAULT_MM_PER_PX
    assert records["b"].skin_mask_path.endswith("b.png") and records["a"].skin_mask_path is None
    assert read_body_library(body_folder, mm_per_px=0.3).records[0].mm_per_px == 0.3


def test_load_body(body_folder):
    records = {r.name: r for r in read_body_library(body_folder).records}
    auto = load_body(records["a"])
    assert auto["mask_source"] == "auto" and auto["image"].shape == (120, 160, 3)
    assert auto["skin"].dtype == np.bool_ and auto["skin"][:, 50:].mean() > 0.9
    assert not auto["skin"][:, :35].any()
    assert auto["ignore"][60, 100] and auto["ignore"][52, 92] and not auto["ignore"][10, 150]
    from_file = load_body(records["b"], find_spots=False)
    assert from_file["mask_source"] == "file" and from_file["skin"][:, 40:].all()
    assert from_file["ignore"][60, 80] and not from_file["ignore"][5, 5]
    spots = load_body(records["c"])["spots"]
    assert np.hypot(spots[:, 0] - 100, spots[:, 1] - 60).min() <= 3


def test_skin_mask_size_mismatch(body_folder):
    write_image(body_folder / "skin" / "a.png", np.full((10, 10), 255, np.uint8))
    record = next(r for r in read_body_library(body_folder).records if r.name == "a")
    with pytest.raises(InputError, match=r"skin/a\.png"):
        load_body(record)


def test_no_skin(tmp_path, rng):
    write_image(tmp_path / "wall.jpg", np.clip(rng.normal((40, 60, 140), 6, (64, 64, 3)), 0, 255).astype(np.uint8))
    record = read_body_library(tmp_path).records[0]
    with pytest.raises(InputError, match=r"wall\.jpg.*no skin"):
        load_body(record)


def test_bad_side_files(tmp_path, rng):
    with pytest.raises(InputError, match="no body photos"):
        read_body_library(tmp_path)
    write_image(tmp_path / "a.jpg", _body(rng))
    (tmp_path / "bodies.csv").write_text("name,scale\na,1\n")
    with pytest.raises(InputError, match=r"bodies\.csv.*mm_per_px"):
        read_body_library(tmp_path)
    (tmp_path / "bodies.csv").unlink()
    (tmp_path / "lesions.csv").write_text("tile,x,y\na,1,2\n")
    with pytest.raises(InputError, match=r"lesions\.csv.*radius_px"):
        read_body_library(tmp_path)


def test_real_itobos_library():
    folder = SHARED_DATA / "bodies" / "itobos"
    if not folder.is_dir():
        pytest.skip(f"iToBoS tiles not found at {folder}")
    library = read_body_library(folder)
    assert len(library) == 13 and not library.skipped
    assert sum(len(r.boxes) for r in library.records) == 106
    body = load_body(library.records[0])
    assert body["skin"].mean() > 0.5 and body["ignore"].any()


def test_box_kinds_and_known_lesions(body_folder):
    """lesion rows, COCO and YOLO boxes are real lesions; ambiguous rows are not."""
    (body_folder / "lesions.csv").write_text("tile,x,y,radius_px,label,note\n"
                                             "c,100,60,6,lesion,mole\nc,60,30,5,ambiguous,faint\n")
    records = {r.name: r for r in read_body_library(body_folder).records}
    assert records["c"].boxes == ((94.0, 54.0, 12.0, 12.0), (55.0, 25.0, 10.0, 10.0))
    assert records["c"].lesions == ((94.0, 54.0, 12.0, 12.0, "lesions.csv", "circle"),)
    assert records["a"].lesions == ((90.0, 50.0, 20.0, 20.0, "coco", "box"),)
    assert records["b"].lesions == ((60.0, 30.0, 40.0, 60.0, "yolo", "box"),)
    body = load_body(records["c"])
    # The mole (a disc of radius 5 at (100, 60)) becomes known lesion 1; the ambiguous box
    # stays in the ignore mask only.
    assert body["known_lesions"][0]["source"] == "lesions.csv"
    known = body["known"] == 1
    yy, xx = np.mgrid[:120, :160]
    disc = (xx - 100) ** 2 + (yy - 60) ** 2 <= 25
    assert (known & disc).sum() / disc.sum() > 0.8 and (known & ~disc).sum() < 0.3 * disc.sum()
    assert body["known"][30, 60] == 0 and body["ignore"][30, 60]


def test_lesions_csv_without_label_column_lists_lesions(tmp_path, rng):
    write_image(tmp_path / "c.jpg", _body(rng))
    (tmp_path / "lesions.csv").write_text("tile,x,y,radius_px\nc,100,60,6\n")
    record = read_body_library(tmp_path).records[0]
    assert record.lesions == ((94.0, 54.0, 12.0, 12.0, "lesions.csv", "circle"),)


def test_segment_lesion_in_box_falls_back_to_a_disc_on_plain_skin(rng):
    from synth.skin import segment_lesion_in_box

    skin = np.clip(rng.normal((210, 165, 145), 2, (60, 60, 3)), 0, 255).astype(np.uint8)
    mask, offset, how = segment_lesion_in_box(skin, (25, 25, 10, 10))
    assert how == "disc"
    yy, xx = np.nonzero(mask)
    assert np.hypot(xx + offset[0] - 29.5, yy + offset[1] - 29.5).max() <= 5.01
    cv2.ellipse(skin, (30, 30), (6, 3), 0, 0, 360, (120, 80, 60), -1)
    mask, offset, how = segment_lesion_in_box(skin, (23, 23, 14, 14))
    assert how == "segmented"
    ys, xs = np.nonzero(mask)
    # The ellipse, not the disc of the box: wider than tall.
    assert np.ptp(xs) > 1.6 * np.ptp(ys)


def test_real_itobos_lesions_become_known():
    folder = SHARED_DATA / "bodies" / "itobos"
    if not folder.is_dir():
        pytest.skip(f"iToBoS tiles not found at {folder}")
    library = read_body_library(folder)
    assert sum(len(r.lesions) for r in library.records) == 40
    record = next(r for r in library.records if r.name == "image_0213")
    body = load_body(record)
    assert len(body["known_lesions"]) == 16 and body["known"].max() == 16
