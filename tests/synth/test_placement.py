"""Tests for synth.placement."""

import cv2
import numpy as np

from synth.placement import (choose_sites, descriptor_distance, lesion_descriptor,
                             site_descriptors)

LIGHT = (225, 190, 170)
DARK = (110, 75, 55)


def _two_tone(shape=(128, 160), seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros(shape + (3,), np.int16)
    image[:, : shape[1] // 2] = LIGHT
    image[:, shape[1] // 2:] = DARK
    image += rng.integers(-5, 6, image.shape).astype(np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def _isic_lesion(skin, size=21):
    """A crop with skin around a dark disk (ISIC-style)."""
    image = np.zeros((size, size, 3), np.uint8)
    image[:] = skin
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= (size // 3) ** 2
    image[mask] = (60, 40, 30)
    return image, mask


def _pad_lesion(skin_rim, size=21):
    """A crop that is black outside the lesion (PAD-UFES-20 style), rim of skin colour."""
    image = np.zeros((size, size, 3), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= (size // 2 - 1) ** 2
    image[mask] = skin_rim
    inner = (yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= (size // 4) ** 2
    image[inner] = (60, 40, 30)
    return image, mask


def test_site_descriptors_shape_and_values():
    image = _two_tone()
    skin = np.ones(image.shape[:2], bool)
    descriptors = site_descriptors(image, skin, [[20, 60], [140, 60]], 8)
    assert descriptors.shape == (2, 8) and descriptors.dtype == np.float32
    assert descriptors[0, 0] > descriptors[1, 0] + 20  # L* light > dark
    none = site_descriptors(image, np.zeros_like(skin), [[20, 60]], 8)
    assert np.isnan(none).all()


def test_lesion_descriptor_sources():
    ring = lesion_descriptor(*_isic_lesion(DARK))
    assert not np.isnan(ring).any()
    prior = lesion_descriptor(*_pad_lesion(LIGHT), fitzpatrick="VI")
    assert np.isnan(prior[3:]).all() and prior[0] == 35.0
    rim = lesion_descriptor(*_pad_lesion(LIGHT))
    assert np.isnan(rim[3:]).all() and rim[0] > 70
    distance = descriptor_distance(rim, np.stack([ring, rim]))
    assert distance[1] == 0 and distance[0] > 10


def test_choose_sites_matches_skin_tone():
    image = _two_tone()
    skin = np.ones(image.shape[:2], bool)
    dark = lesion_descriptor(*_isic_lesion(DARK))
    light = lesion_descriptor(*_pad_lesion(LIGHT))
    dark_prior = lesion_descriptor(*_pad_lesion(LIGHT), fitzpatrick=6)
    for seed in range(3):
        sites = choose_sites(image, skin, [dark, light, dark_prior], [6, 6, 6],
                             rng=np.random.default_rng(seed), top_k=3)
        assert sites[0, 0] > 80 and sites[2, 0] > 80  # dark half
        assert sites[1, 0] < 80  # light half


def test_choose_sites_constraints_and_seed():
    image = _two_tone((128, 128))
    skin = np.zeros(image.shape[:2], bool)
    skin[10:120, 5:125] = True
    occupied = np.zeros_like(skin)
    occupied[40:80, 40:80] = True
    descriptor = lesion_descriptor(*_isic_lesion(LIGHT))
    radii = [10, 8, 8, 6, 5]
    margin, gap = 3, 4
    sites = choose_sites(image, skin, [descriptor] * 5, radii, rng=np.random.default_rng(1),
                         occupied=occupied, edge_margin=margin, min_gap=gap)
    again = choose_sites(image, skin, [descriptor] * 5, radii, rng=np.random.default_rng(1),
                         occupied=occupied, edge_margin=margin, min_gap=gap)
    np.testing.assert_array_equal(sites, again)
    assert sites.dtype == np.int64 and sites.shape == (5, 2) and (sites >= 0).all()
    allowed = (skin & ~occupied).astype(np.uint8)
    clearance = cv2.distanceTransform(np.pad(allowed, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    for (x, y), radius in zip(sites, radii):
        assert clearance[y, x] >= radius + margin
    for i in range(5):
        for j in range(i + 1, 5):
            assert np.hypot(*(sites[i] - sites[j])) >= radii[i] + radii[j] + gap


def test_lesion_too_big():
    image = _two_tone((64, 64))
    skin = np.ones(image.shape[:2], bool)
    descriptor = lesion_descriptor(*_isic_lesion(LIGHT))
    sites = choose_sites(image, skin, [descriptor, descriptor], [40, 5],
                         rng=np.random.default_rng(0))
    assert (sites[0] == -1).all() and (sites[1] >= 0).all()
    crowded = choose_sites(image, skin, [descriptor] * 5, [13] * 5,
                           rng=np.random.default_rng(0), edge_margin=2, min_gap=2)
    assert (crowded == -1).all(axis=1).sum() >= 1


def test_choose_sites_places_six_lesions_of_mixed_sizes():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(80, 220, (512, 512, 3)).astype(np.uint8), (0, 0), 3)
    skin = np.ones((512, 512), bool)
    skin[:, :60] = False
    descriptors = [lesion_descriptor(*_isic_lesion(LIGHT))] * 3 + \
        [lesion_descriptor(*_pad_lesion(DARK), fitzpatrick=4)] * 3
    radii = [8, 10, 12, 15, 20, 30]
    for seed in range(3):
        sites = choose_sites(image, skin, descriptors, radii, rng=np.random.default_rng(seed))
        assert (sites >= 0).all()
