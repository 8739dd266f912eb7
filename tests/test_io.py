"""File formats: photos of every kind, masks, .flo, manifests, atomic writes."""
import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from synth import io
from synth.io import InputError


@pytest.fixture
def photo(rng):
    return rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)


def test_png_and_tiff_round_trip(photo, tmp_path):
    for suffix in (".png", ".tif"):
        path = tmp_path / f"p{suffix}"
        io.write_image(path, photo)
        assert np.array_equal(io.read_image(path), photo)


def test_exif_orientation_is_honoured(photo, tmp_path):
    path = tmp_path / "rotated.jpg"
    image = Image.fromarray(photo)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(path, exif=exif, quality=100)
    assert io.read_image(path).shape == (20, 12, 3)


def test_sixteen_bit_grey_and_alpha(tmp_path):
    sixteen = np.full((4, 5, 3), 65535, np.uint16)
    sixteen[0, 0] = 257 * 10
    cv2.imwrite(str(tmp_path / "16.png"), sixteen)
    image = io.read_image(tmp_path / "16.png")
    assert image.dtype == np.uint8 and image[0, 0, 0] == 10 and image[1, 1, 0] == 255
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((4, 5), 77, np.uint8))
    assert np.all(io.read_image(tmp_path / "grey.png") == 77)
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 2] = 200  # red in OpenCV's BGRA order
    rgba[..., 3] = 10
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    assert io.read_image(tmp_path / "alpha.png")[0, 0].tolist() == [200, 0, 0]


def test_bad_photos_name_the_file(photo, tmp_path):
    (tmp_path / "text.jpg").write_text("hello")
    io.write_image(tmp_path / "cut.jpg", photo)
    data = (tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("text.jpg", "cut.jpg", "empty.png", "missing.png"):
        with pytest.raises(InputError, match=name):
            io.read_image(tmp_path / name)


def test_mask_size_mismatch(tmp_path):
    io.write_image(tmp_path / "m.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="m.png.*does not match"):
        io.read_mask(tmp_path / "m.png", shape=(5, 4))


def test_flo_round_trip_and_corrupt(tmp_path, rng):
    flow = rng.normal(size=(7, 9, 2)).astype(np.float32)
    io.write_flo(tmp_path / "f.flo", flow)
    assert np.array_equal(io.read_flo(tmp_path / "f.flo"), flow)
    (tmp_path / "bad.flo").write_bytes((tmp_path / "f.flo").read_bytes()[:-4])
    with pytest.raises(InputError, match="bad.flo"):
        io.read_flo(tmp_path / "bad.flo")


def test_label_maps_keep_values(tmp_path):
    labels = np.array([[0, 1], [2, 255]], np.uint8)
    instances = np.array([[0, 1], [700, 65535]], np.uint16)
    io.write_image(tmp_path / "l.png", labels)
    io.write_image(tmp_path / "i.png", instances)
    assert np.array_equal(io.read_label_map(tmp_path / "l.png"), labels)
    assert np.array_equal(io.read_label_map(tmp_path / "i.png"), instances)


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with io.atomic_path(tmp_path / "out.json") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def test_manifest_ignores_a_cut_line_and_merges_shards(tmp_path):
    records = [{"id": f"{i:06d}", "index": i} for i in range(3)]
    (tmp_path / "manifest-1-of-2.jsonl").write_text(io.json_line(records[0]) + io.json_line(records[2]))
    (tmp_path / "manifest-2-of-2.jsonl").write_text(io.json_line(records[1]) + '{"id": "0000')
    assert io.read_manifest(tmp_path) == records
    with pytest.raises(InputError, match="manifest"):
        io.read_manifest(tmp_path / "nowhere")


def test_present_lesions_skips_lesions_new_at_t1():
    record = {"lesions": [{"bbox": [1, 2, 3, 4]}, {"bbox": None, "t1": {"bbox": [0, 0, 2, 2]}}]}
    assert io.present_lesions(record) == [{"bbox": [1, 2, 3, 4]}]
    assert json.loads(io.json_line(record)) == record
