"""Tests for synth.contrast: Delta E00 of a lesion against its ring of skin."""
import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from synth.contrast import VISIBLE_DELTA_E, contrasts_of_instances, lesion_contrast, ring_reach


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius ** 2


def test_contrast_of_a_uniform_disc_is_the_delta_e_of_its_two_colours():
    image = np.full((64, 64, 3), (210, 170, 150), np.uint8)
    disc = _disc(image.shape, (32, 32), 8)
    image[disc] = (120, 80, 60)
    expected = deltaE_ciede2000(rgb2lab(np.uint8([[[120, 80, 60]]]))[0, 0],
                                rgb2lab(np.uint8([[[210, 170, 150]]]))[0, 0])
    assert lesion_contrast(image, disc) == pytest.approx(float(expected), abs=1e-6)
    assert expected > 20


def test_invisible_disc_and_excluded_ring():
    image = np.full((64, 64, 3), (210, 170, 150), np.uint8)
    disc = _disc(image.shape, (32, 32), 8)
    assert lesion_contrast(image, disc) == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(lesion_contrast(image, disc, exclude=np.ones((64, 64), bool)))
    assert np.isnan(lesion_contrast(image, np.zeros((64, 64), bool)))


def test_ring_leaves_other_lesions_out():
    image = np.full((64, 80, 3), (210, 170, 150), np.uint8)
    instances = np.zeros((64, 80), np.uint16)
    first, second = _disc(image.shape, (20, 32), 6), _disc(image.shape, (34, 32), 6)
    image[first] = (200, 160, 140)          # faint
    image[second] = (40, 20, 20)            # very dark, right beside the first
    instances[first], instances[second] = 1, 2
    values = contrasts_of_instances(image, instances)
    assert values[1] < VISIBLE_DELTA_E < values[2]
    # The faint lesion is measured against plain skin only, as if its neighbour were not there.
    expected = deltaE_ciede2000(rgb2lab(np.uint8([[[200, 160, 140]]]))[0, 0],
                                rgb2lab(np.uint8([[[210, 170, 150]]]))[0, 0])
    assert values[1] == pytest.approx(float(expected), abs=1e-6)
    assert abs(lesion_contrast(image, first) - values[1]) > 0.3


def test_a_crop_grown_by_the_ring_reach_measures_the_same_contrast():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)
    disc = _disc(image.shape, (40, 36), 9)
    rows, cols = np.nonzero(disc)
    reach = ring_reach(disc.sum())
    window = (slice(rows.min() - reach, rows.max() + reach + 1),
              slice(cols.min() - reach, cols.max() + reach + 1))
    assert lesion_contrast(image[window], disc[window]) == pytest.approx(
        lesion_contrast(image, disc), abs=1e-9)
    # A window 3 px tighter (the reach rounds up and keeps a pixel to spare) cuts the ring.
    tight = (slice(window[0].start + 3, window[0].stop - 3),
             slice(window[1].start + 3, window[1].stop - 3))
    assert lesion_contrast(image[tight], disc[tight]) != pytest.approx(
        lesion_contrast(image, disc), abs=1e-9)
