"""Tests for synth.augment."""
import json

import numpy as np
import pytest

from synth.augment import (ITA_RANGES, augment_body, augment_lesion, fitzpatrick_from_ita,
                           individual_typology_angle, photometric, shift_skin_tone)


def _lesion(size=41):
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - 18) ** 2 / 14 ** 2 + (xx - 22) ** 2 / 9 ** 2 <= 1
    rng = np.random.default_rng(0)
    image = np.zeros((size, size, 3), np.uint8)
    image[mask] = rng.integers(60, 120, (mask.sum(), 3))
    return image, mask


def _skin(shape=(40, 48), colour=(200, 160, 140), seed=0):
    noise = np.random.default_rng(seed).integers(-6, 7, shape + (3,))
    return np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)


def test_augment_lesion_seeded_and_serialisable():
    image, mask = _lesion()
    a = augment_lesion(image, mask, rng=np.random.default_rng(3))
    b = augment_lesion(image, mask, rng=np.random.default_rng(3))
    c = augment_lesion(image, mask, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2] and a[2] != c[2]
    json.dumps(a[2])
    assert a[0].dtype == np.uint8 and a[0].ndim == 3 and a[1].dtype == bool
    assert a[0].shape[:2] == a[1].shape


def test_augment_lesion_canvas_expands_and_mask_aligned():
    image, mask = _lesion()
    # Colour encodes the mask: white inside, black outside; no colour change.
    coded = np.where(mask[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2)
    full = np.ones_like(mask)
    for seed in range(6):
        elastic = 0.0 if seed % 2 else 0.04
        out, out_mask, params = augment_lesion(
            coded, mask, rng=np.random.default_rng(seed), hue_shift=0, saturation_range=(1, 1),
            brightness=0, contrast_range=(1, 1), scale_range=(1, 1), max_rotation=180,
            elastic_strength=elastic)
        if elastic == 0:
            # Nothing cut: lesion area kept up to interpolation, and the whole rotated crop
            # (a full mask) keeps its area too.
            assert abs(out_mask.sum() - mask.sum()) < 0.05 * mask.sum()
            _, whole, _ = augment_lesion(coded, full, rng=np.random.default_rng(seed),
                                         scale_range=(1, 1), elastic_strength=0)
            assert abs(whole.sum() - full.sum()) < 0.05 * full.sum()
        agree = (out[..., 0] > 127) == out_mask
        assert agree.mean() > 0.98, params
        assert set(np.unique(out_mask)) <= {False, True}


def test_augment_lesion_uint8_mask_stays_binary():
    image, mask = _lesion()
    out, out_mask, _ = augment_lesion(image, mask.astype(np.uint8) * 255,
                                      rng=np.random.default_rng(1))
    assert out_mask.dtype == np.uint8 and set(np.unique(out_mask)) <= {0, 255}


def test_augment_body_masks_consistent():
    height, width = 48, 64
    labels = np.zeros((height, width), np.uint8)
    labels[10:20, 10:30] = 1
    labels[30:40, 40:55] = 2
    instances = labels.astype(np.uint16) * 7
    # Colour encodes the labels.
    image = np.stack([labels * 100, labels * 100, labels * 100], -1).astype(np.uint8)
    for seed in range(4):
        out, masks, params = augment_body(image, {"labels": labels, "instances": instances},
                                          rng=np.random.default_rng(seed),
                                          mask_fill={"labels": 255, "instances": 0})
        assert out.shape == image.shape and masks["labels"].dtype == np.uint8
        assert masks["instances"].dtype == np.uint16
        assert set(np.unique(masks["labels"])) <= {0, 1, 2, 255}
        assert set(np.unique(masks["instances"])) <= {0, 7, 14}
        valid = masks["labels"] != 255
        predicted = np.rint(out[..., 0] / 100.0)
        assert (predicted[valid] == masks["labels"][valid]).mean() > 0.97
        json.dumps(params)
    same = augment_body(image, labels, rng=np.random.default_rng(2))
    again = augment_body(image, labels, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(same[1], again[1])
    assert augment_body(image, None, rng=np.random.default_rng(0))[1] is None


def test_ita_and_types():
    light = _skin(colour=(235, 205, 185))
    dark = _skin(colour=(100, 70, 50))
    assert individual_typology_angle(light) > individual_typology_angle(dark)
    assert fitzpatrick_from_ita(60) == 1 and fitzpatrick_from_ita(-45) == 6
    assert fitzpatrick_from_ita(20) == 4


@pytest.mark.parametrize("target", [1, 3, 6, "V"])
def test_shift_skin_tone_reaches_target_type(target):
    image = _skin(colour=(205, 160, 135))
    skin = np.ones(image.shape[:2], bool)
    out, params = shift_skin_tone(image, skin, rng=np.random.default_rng(0),
                                  target_fitzpatrick=target, feather_px=0)
    json.dumps(params)
    ita = individual_typology_angle(out, skin)
    low, high = ITA_RANGES[params["to_type"]]
    assert low - 3 <= ita <= high + 3, (ita, params)


def test_shift_skin_tone_direction_and_mask():
    image = _skin(colour=(225, 190, 170))
    skin = np.zeros(image.shape[:2], bool)
    skin[:, :24] = True
    before = individual_typology_angle(image, skin)
    out, params = shift_skin_tone(image, skin, target_fitzpatrick=6)
    assert individual_typology_angle(out, skin) < before - 20
    np.testing.assert_array_equal(out[:, 24:], image[:, 24:])
    lighter, _ = shift_skin_tone(_skin(colour=(120, 80, 60)), np.ones((40, 48), bool),
                                 target_fitzpatrick=1)
    assert individual_typology_angle(lighter) > individual_typology_angle(
        _skin(colour=(120, 80, 60)))
    drawn = [shift_skin_tone(image, skin, rng=np.random.default_rng(s))[1]["to_type"]
             for s in range(12)]
    assert len(set(drawn)) > 2


def test_photometric_seeded():
    image = _skin((32, 40))
    a, pa = photometric(image, rng=np.random.default_rng(5), jpeg_probability=1.0)
    b, pb = photometric(image, rng=np.random.default_rng(5), jpeg_probability=1.0)
    c, pc = photometric(image, rng=np.random.default_rng(6), jpeg_probability=1.0)
    np.testing.assert_array_equal(a, b)
    assert pa == pb and pa != pc and not np.array_equal(a, c)
    assert a.shape == image.shape and a.dtype == np.uint8
    assert pa["jpeg_quality"] is not None
    json.dumps(pa)


def test_photometric_identity_settings():
    image = _skin((16, 16))
    out, _ = photometric(image, rng=np.random.default_rng(0), hue_shift=0,
                         saturation_range=(1, 1), brightness=0, contrast_range=(1, 1),
                         gamma_range=(1, 1), blur_probability=0, noise_sigma_range=(0, 0),
                         jpeg_probability=0)
    np.testing.assert_array_equal(out, image)


def test_hair_layer_draws_thin_dark_strands():
    from synth.augment import apply_hair, hair_layer, hairiness

    skin = np.full((128, 128, 3), (210, 170, 150), np.uint8)
    alpha, colour, params = hair_layer(skin.shape, rng=np.random.default_rng(0))
    again = hair_layer(skin.shape, rng=np.random.default_rng(0))[0]
    assert np.array_equal(alpha, again) and alpha.dtype == np.float32
    assert 0 < (alpha > 0.05).mean() < 0.5 and alpha.max() <= 1.0
    assert params["count"] >= 10 and all(w <= 1.8 for w in params["widths"])
    assert colour.max() <= 70
    hairy = apply_hair(skin, alpha, colour)
    assert (hairy[alpha > 0.2].astype(int).sum(axis=1) < skin[0, 0].astype(int).sum()).all()
    assert np.array_equal(hairy[alpha == 0], skin[alpha == 0])
    assert hairiness(skin) == 0.0 and hairiness(hairy) > 0.02
