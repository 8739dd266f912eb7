"""Detections kept to skin: masking the heatmap, dropping and splitting proposals, the CLI."""
import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from lesiontrack.cli import main
from lesiontrack.detection.detect import detect
from lesiontrack.detection.skin import mask_probabilities, on_skin, photo_skin
from synth.io import write_image


def darkness_detector():
    """A fixed 'detector': P(lesion) = sigmoid((120 - mean RGB) / 4), split evenly by class."""
    inputs = keras.Input((None, None, 3))
    lesion = keras.layers.Lambda(
        lambda x: keras.ops.sigmoid((120.0 - keras.ops.mean(x, axis=-1, keepdims=True)) / 4.0))(inputs)
    outputs = keras.layers.Concatenate()([1.0 - lesion, lesion / 2, lesion / 2])
    return keras.Model(inputs, outputs)


def skin_photo(height=64, width=96, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal([200, 160, 140], 6, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def fixed_model():
    yield darkness_detector()
    keras.backend.clear_session()


def test_mask_sets_off_skin_to_background():
    probabilities = np.tile(np.float32([0.2, 0.4, 0.4]), (5, 9, 1))
    skin = np.zeros((5, 9), bool)
    skin[:, :3] = True
    masked = mask_probabilities(probabilities, skin, dilation=2)
    np.testing.assert_array_equal(masked[:, :5], probabilities[:, :5])   # skin + 2 px
    np.testing.assert_array_equal(masked[:, 5:], np.tile(np.float32([1, 0, 0]), (5, 4, 1)))
    assert probabilities[0, 8, 0] == np.float32(0.2)                      # input untouched
    with pytest.raises(ValueError, match="does not match"):
        mask_probabilities(probabilities, skin[:4])


def test_on_skin_keeps_lesions_mostly_on_skin():
    instances = np.zeros((10, 10), np.int32)
    instances[1:4, 1:4] = 1            # on skin
    instances[6:9, 3:7] = 2            # 2 of 4 columns on skin: kept (share 0.5)
    instances[1:4, 7:10] = 3           # off skin
    skin = np.zeros((10, 10), bool)
    skin[:, :5] = True
    lesions = [{"id": 1, "centroid": [2, 2]}, {"id": 2, "centroid": [4.5, 7]},
               {"id": 3, "centroid": [8, 2]}]
    assert [l["id"] for l in on_skin(lesions, instances, skin, dilation=0)] == [1, 2]
    assert [l["id"] for l in on_skin(lesions, instances, skin, min_share=0.6, dilation=0)] == [1]


def test_no_box_spans_a_strap_and_nothing_is_found_on_fabric(fixed_model):
    photo = skin_photo()
    photo[20:28, 30:67] = (60, 40, 35)                       # a dark band across the strap
    yy, xx = np.mgrid[:64, :96]
    photo[(xx - 88) ** 2 + (yy - 45) ** 2 <= 25] = (60, 40, 35)   # a dark spot on fabric
    skin = np.ones((64, 96), bool)
    skin[:, 44:53] = False                                   # strap
    skin[:, 80:] = False                                     # garment
    everywhere = detect(photo, model=fixed_model, skin=None, classifier=None)
    # The 3x3 opening of the proposals trims the disc's four one-pixel tips.
    assert sorted(l["bbox"] for l in everywhere) == [[30, 20, 37, 8], [84, 41, 9, 9]]
    kept = detect(photo, model=fixed_model, skin=skin, classifier=None)
    # The skin grown by 3 px leaves columns 47-49 of the strap: the band is cut there.
    assert sorted(l["bbox"] for l in kept) == [[30, 20, 17, 8], [50, 20, 17, 8]]


def test_photo_skin_of_skin_and_of_no_skin():
    photo = skin_photo()
    photo[:, 64:] = (40, 60, 160)                            # blue cloth
    skin = photo_skin(photo)
    assert skin[:, :56].mean() > 0.95 and skin[:, 72:].mean() < 0.05
    assert photo_skin(np.zeros((32, 32, 3), np.uint8)) is None


def test_cli_records_whether_the_skin_mask_was_used(tmp_path, tiny_detector_path):
    photo = skin_photo()
    photo[:, 64:] = (40, 60, 160)
    write_image(tmp_path / "arm.png", photo)
    runner = CliRunner()
    for flags, used in (([], True), (["--no-skin-mask"], False)):
        out = tmp_path / f"out{len(flags)}"
        result = runner.invoke(main, ["detect", str(tmp_path / "arm.png"), "--out", str(out),
                                      "--weights", str(tiny_detector_path), "--classifier", "none",
                                      *flags])
        assert result.exit_code == 0, result.output
        record = json.loads((out / "arm.json").read_text())
        assert record["skin_mask"]["used"] is used
        if used:
            assert 0.55 < record["skin_mask"]["skin_fraction"] < 0.75
        else:
            assert record["skin_mask"]["skin_fraction"] is None
