"""File formats: photos of every kind, masks, .flo, manifests, atomic writes."""
import json
import os
import re

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


# What a viewer shows for each EXIF orientation tag (TIFF 6.0 / EXIF 2.3, tag 0x0112) of
# the stored pixels ``a``.
DISPLAYED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],                   # mirrored left-right
    3: lambda a: a[::-1, ::-1],                # rotated 180
    4: lambda a: a[::-1, :],                   # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),         # transposed
    6: lambda a: np.rot90(a, -1),              # rotated 90 clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # transversed
    8: lambda a: np.rot90(a, 1),               # rotated 90 anticlockwise
}


@pytest.mark.parametrize("orientation", sorted(DISPLAYED))
def test_exif_orientation_is_honoured(orientation, tmp_path):
    # 2 x 3 blocks of 8 px, each its own colour: no rotation or mirror maps it onto itself.
    colours = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]],
                        [[255, 255, 0], [0, 0, 0], [255, 255, 255]]], np.uint8)
    stored = np.repeat(np.repeat(colours, 8, axis=0), 8, axis=1)  # (16, 24, 3)
    path = tmp_path / "oriented.jpg"
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, quality=100, subsampling=0)
    expected = DISPLAYED[orientation](stored)
    shown = io.read_image(path)
    assert shown.shape == expected.shape
    # Block centres, away from the JPEG ringing at block edges.
    centres = (slice(4, None, 8), slice(4, None, 8))
    difference = np.abs(shown[centres].astype(int) - expected[centres].astype(int))
    assert difference.max() < 16


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


def _png_bytes(photo):
    return cv2.imencode(".png", photo)[1].tobytes()


@pytest.mark.parametrize("name, data, message", [
    ("empty.jpg", b"", "empty file"),
    ("empty.png", b"", "empty file"),
    ("text.jpg", b"this is not a photo\n", "not a JPEG image"),
    ("text.png", b"this is not a photo\n", "not a PNG image"),
    ("text.dat", b"this is not a photo\n", "not a readable"),
    ("cut.jpg", b"\xff\xd8\xff\xe0" + bytes(200), "truncated JPEG"),
    ("cut.png", None, "truncated PNG"),
    ("signature-only.png", b"\x89PNG\r\n\x1a\n", "truncated PNG"),
    ("bad-checksum.png", "crc", "corrupt PNG"),
])
def test_unreadable_photo_says_why_and_decoders_print_nothing(photo, tmp_path, capfd, name,
                                                              data, message):
    png = _png_bytes(photo)
    if data is None:
        data = png[: len(png) // 2]
    elif data == "crc":
        data = png[:45] + bytes([png[45] ^ 0xFF]) + png[46:]  # a byte inside the IDAT data
    path = tmp_path / name
    path.write_bytes(data)
    for read in (io.read_image, io.read_mask):
        with pytest.raises(InputError, match=f"^{re.escape(str(path))}: {message}"):
            read(path)
    assert capfd.readouterr().err == ""


def test_content_not_suffix_decides_the_format(photo, tmp_path):
    (tmp_path / "really-a-png.jpg").write_bytes(_png_bytes(photo))
    assert np.array_equal(io.read_image(tmp_path / "really-a-png.jpg"), photo[..., ::-1])


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
