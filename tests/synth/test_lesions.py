"""Tests for synth.lesions: layouts, loading, automatic lesion masks, rim colour."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from synth.io import InputError, write_image
from synth.lesions import (
    LesionRecord, check_lesions, lesion_rim_colour, load_lesion, read_lesion_library, segment_lesion,
)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SKIN_RGB = (224, 172, 150)


def _lesion_photo(rng, size=48, radius=12, black_outside=False):
    image = np.clip(rng.normal(SKIN_RGB, 4, (size, size, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), radius, 1, -1)
    image[mask > 0] = (110, 70, 55)
    if black_outside:
        image[mask == 0] = 0
    return image, mask.astype(bool)


def _write(folder, name, image, mask=None):
    write_image(folder / "images" / f"{name}.jpg", image)
    if mask is not None:
        write_image(folder / "masks" / f"{name}.png", mask.astype(np.uint8) * 255)


def test_pad_ufes_layout(tmp_path, rng):
    for name in ("P1_1_1", "P1_2_2", "P2_3_3"):
        _write(tmp_path, name, *_lesion_photo(rng, black_outside=True))
    (tmp_path / "metadata.csv").write_text(
        "img_id,patient_id,lesion_id,diagnostic,malignant,biopsed,region,fitspatrick,diameter_1,diameter_2\n"
        "P1_1_1.png,P1,1,BCC,1,True,FACE,2.0,7.0,9.0\n"
        "P1_2_2.png,P1,2,NEV,0,True,ARM,,,\n"
        "P2_3_3.png,P2,3,MEL,1,True,BACK,3.0,4.0,\n"
        "P9_9_9.png,P9,9,ACK,0,True,BACK,3.0,4.0,\n"
    )
    library = read_lesion_library(tmp_path)
    assert library.layout == "pad-ufes-20"
    assert [r.id for r in library.records] == ["P1_1_1", "P1_2_2", "P2_3_3"]
    first, second, third = library.records
    assert first.malignant and first.diagnosis == "BCC" and first.patient == "P1"
    assert first.diameter_mm == 9.0 and first.fitzpatrick == 2
    assert not second.malignant and second.diameter_mm is None and second.fitzpatrick is None
    assert third.malignant and third.diameter_mm == 4.0
    assert first.mask_path.endswith("P1_1_1.png") and first.source_layout == "pad-ufes-20"
    assert len(library.skipped) == 1 and "P9_9_9" in library.skipped[0][0]


def test_isic_layout(tmp_path, rng):
    for name in ("ISIC_1", "ISIC_2", "ISIC_3"):
        _write(tmp_path, name, *_lesion_photo(rng))
    (tmp_path / "labels.csv").write_text(
        "image_id,melanoma,seborrheic_keratosis\nISIC_1,1.0,0.0\nISIC_2,0.0,1.0\nISIC_3,0.0,0.0\n"
    )
    library = read_lesion_library(tmp_path)
    assert library.layout == "isic2017"
    assert [(r.diagnosis, r.malignant, r.patient) for r in library.records] == [
        ("MEL", True, "ISIC_1"), ("SEK", False, "ISIC_2"), ("NEV", False, "ISIC_3"),
    ]


def test_generic_layout(tmp_path, rng):
    image, mask = _lesion_photo(rng)
    write_image(tmp_path / "a" / "one.jpg", image)
    write_image(tmp_path / "a" / "one_mask.png", mask.astype(np.uint8) * 255)
    write_image(tmp_path / "two.png", image)
    (tmp_path / "lesions.csv").write_text(
        "image,mask,malignant,diagnosis,patient,diameter_mm,fitzpatrick\n"
        "a/one.jpg,a/one_mask.png,true,BCC,p1,5.5,2\n"
        "two.png,,0,,,,\n"
        "gone.jpg,,1,,,,\n"
    )
    library = read_lesion_library(tmp_path)
    assert library.layout == "generic"
    one, two = library.records
    assert one.malignant and one.diagnosis == "BCC" and one.patient == "p1" and one.diameter_mm == 5.5
    assert one.fitzpatrick == 2 and one.mask_path.endswith("one_mask.png")
    assert not two.malignant and two.mask_path is None and two.patient == "two"
    assert library.skipped == [(str(tmp_path / "gone.jpg"), "image file missing")]
    loaded, loaded_mask, source = load_lesion(two)
    assert source == "auto" and loaded_mask[24, 24]


def test_missing_columns_named(tmp_path):
    (tmp_path / "lesions.csv").write_text("image,label\nx.jpg,1\n")
    with pytest.raises(InputError, match=r"lesions\.csv.*malignant"):
        read_lesion_library(tmp_path)


def test_unknown_csv_layout(tmp_path):
    (tmp_path / "stuff.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="stuff.csv"):
        read_lesion_library(tmp_path)


def test_nothing_usable(tmp_path):
    (tmp_path / "labels.csv").write_text("image_id,melanoma,seborrheic_keratosis\nISIC_1,1,0\n")
    with pytest.raises(InputError, match="no usable lesion"):
        read_lesion_library(tmp_path)


def _record(tmp_path, image_name, mask_name=None):
    return LesionRecord(
        id="x", image_path=str(tmp_path / image_name),
        mask_path=str(tmp_path / mask_name) if mask_name else None, malignant=False,
        diagnosis=None, patient=None, fitzpatrick=None, diameter_mm=None, source_layout="generic",
    )


def test_load_lesion_errors(tmp_path, rng):
    image, mask = _lesion_photo(rng)
    write_image(tmp_path / "l.jpg", image)
    write_image(tmp_path / "small.png", np.full((20, 20), 255, np.uint8))
    write_image(tmp_path / "empty.png", np.zeros((48, 48), np.uint8))
    data = (tmp_path / "l.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="small.png"):
        load_lesion(_record(tmp_path, "l.jpg", "small.png"))
    with pytest.raises(InputError, match="empty mask"):
        load_lesion(_record(tmp_path, "l.jpg", "empty.png"))
    with pytest.raises(InputError, match="cut.jpg"):
        load_lesion(_record(tmp_path, "cut.jpg"))


def test_check_lesions_skips_corrupt(tmp_path, rng):
    for name in ("a", "b"):
        _write(tmp_path, name, *_lesion_photo(rng))
    (tmp_path / "images" / "b.jpg").write_bytes(b"not an image\xff\xd9")
    (tmp_path / "labels.csv").write_text("image_id,melanoma,seborrheic_keratosis\na,0,0\nb,0,0\n")
    good, skipped = check_lesions(read_lesion_library(tmp_path))
    assert [r.id for r in good] == ["a"] and len(skipped) == 1 and "b.jpg" in skipped[0][0]


def test_segment_lesion_on_skin(rng):
    image, mask = _lesion_photo(rng, size=64, radius=14)
    found = segment_lesion(image)
    assert (found & mask).sum() / (found | mask).sum() > 0.85


def test_segment_lesion_black_surroundings(rng):
    image, mask = _lesion_photo(rng, size=64, radius=14, black_outside=True)
    found = segment_lesion(image)
    assert (found & mask).sum() / (found | mask).sum() > 0.9


def test_segment_lesion_nothing():
    with pytest.raises(ValueError):
        segment_lesion(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError):
        segment_lesion(np.full((32, 32, 3), 200, np.uint8))


def test_lesion_rim_colour(rng):
    image, mask = _lesion_photo(rng, size=64, radius=10)
    mean, std = lesion_rim_colour(image, mask)
    expected = cv2.cvtColor(np.array([[SKIN_RGB]], np.uint8), cv2.COLOR_RGB2LAB)[0, 0].astype(float)
    assert abs(mean[0] - expected[0] * 100 / 255) < 2
    assert np.allclose(mean[1:], expected[1:] - 128, atol=2) and np.all(std < 5)
    black, black_mask = _lesion_photo(rng, size=64, radius=10, black_outside=True)
    assert lesion_rim_colour(black, black_mask) is None


@pytest.mark.parametrize("name, count", [("pad-ufes-20", 703), ("isic2017", 74)])
def test_real_libraries(name, count):
    folder = SHARED_DATA / "lesions" / name
    if not folder.is_dir():
        pytest.skip(f"lesion data not found at {folder}")
    library = read_lesion_library(folder)
    assert library.layout == name and len(library) == count and not library.skipped
    image, mask, source = load_lesion(library.records[0])
    assert source == "file" and mask.shape == image.shape[:2] and mask.any()
    if name == "pad-ufes-20":
        assert sum(r.malignant for r in library.records) == 531
        assert len({r.patient for r in library.records}) == 386


def test_strands_cut_off_and_thin_masks_rejected():
    from synth.lesions import is_thin_strand, remove_strands

    mask = np.zeros((80, 80), np.uint8)
    cv2.circle(mask, (40, 40), 15, 1, -1)
    cv2.line(mask, (40, 40), (78, 2), 1, 2)              # a hair-like appendage
    mask = mask > 0
    cleaned = remove_strands(mask)
    assert not cleaned[5:20, 60:76].any() and cleaned[40, 40]
    assert not (cleaned & ~mask).any()
    assert not is_thin_strand(cleaned)
    strand = np.zeros((40, 40), np.uint8)
    cv2.line(strand, (3, 5), (35, 30), 1, 2)
    assert is_thin_strand(strand > 0)
    assert is_thin_strand(np.zeros((5, 5), bool))


def test_diameter_prior_by_diagnosis():
    from synth.lesions import DIAMETER_PRIOR_MM, draw_diameter_mm

    rng = np.random.default_rng(0)
    assert draw_diameter_mm(10.0, "BCC", rng=rng) == pytest.approx(10.0, rel=0.15)
    nevi = [draw_diameter_mm(None, "NEV", rng=rng) for _ in range(400)]
    melanomas = [draw_diameter_mm(None, "MEL", rng=rng) for _ in range(400)]
    assert np.median(nevi) == pytest.approx(DIAMETER_PRIOR_MM["NEV"][0], rel=0.1)
    assert np.median(melanomas) > 1.5 * np.median(nevi)
    assert min(nevi) >= DIAMETER_PRIOR_MM["NEV"][2] and max(nevi) <= DIAMETER_PRIOR_MM["NEV"][3]


def test_black_background_inside_a_mask_is_trimmed():
    from synth.lesions import trim_background

    image = np.zeros((40, 40, 3), np.uint8)
    cv2.circle(image, (20, 20), 10, (150, 100, 80), -1)
    mask = np.zeros((40, 40), np.uint8)
    cv2.circle(mask, (20, 20), 15, 1, -1)            # reaches 5 px over the black background
    trimmed = trim_background(image, mask > 0)
    assert trimmed.sum() == (image.max(axis=2) > 0).sum()
    # On a crop that carries skin around the lesion, a dark lesion pixel is not trimmed.
    skin = np.full((40, 40, 3), 200, np.uint8)
    skin[18:22, 18:22] = 5
    disc = np.zeros((40, 40), bool)
    disc[10:30, 10:30] = True
    assert np.array_equal(trim_background(skin, disc), disc)
