"""Fixed-context lesion crops and their augmentation."""
import numpy as np
import pytest

from lesiontrack.detection.crops import (CropSet, augment_crop,
                                         context_square, crop_context, crop_lesions, view_crop)


def _ramp(height=30, width=20):
    """uint8 (H, W, 3) with channel 0 = column, channel 1 = row, channel 2 = 7."""
    yy, xx = np.mgrid[:height, :width]
    return np.stack([xx, yy, np.full_like(xx, 7)], axis=2).astype(np.uint8)


def test_context_square_is_twice_the_longest_side_around_the_centre():
    assert context_square([10, 20, 6, 4]) == (7, 16, 12)
    assert context_square([10, 20, 6, 4], context=3.0) == (4, 13, 18)
    assert context_square([5, 5, 1, 1]) == (4, 4, 4)  # min_side; 3.5 rounds up


def test_crop_inside_the_photo_is_the_square_itself():
    image = _ramp()
    crop = crop_context(image, [6, 10, 4, 3], size=8)  # side 8 from (4, 8)
    np.testing.assert_array_equal(crop, image[8:16, 4:12])


def test_crop_near_the_border_is_padded_by_reflection():
    image = _ramp()
    crop = crop_context(image, [0, 5, 4, 4], size=8)  # side 8 from x = -2, y = 3
    np.testing.assert_array_equal(crop[0, :, 0], [2, 1, 0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(crop[:, 0, 1], np.arange(3, 11))
    corner = crop_context(image, [17, 27, 4, 4], size=8)  # side 8 from (15, 25) to (23, 33)
    np.testing.assert_array_equal(corner[0, :, 0], [15, 16, 17, 18, 19, 18, 17, 16])
    np.testing.assert_array_equal(corner[:, 0, 1], [25, 26, 27, 28, 29, 28, 27, 26])
    assert (corner[..., 2] == 7).all()


def test_crop_is_resized_to_the_requested_side():
    image = _ramp(60, 60)
    crops = crop_lesions(image, [[20, 20, 10, 10], [0, 0, 4, 6]], size=32)
    assert crops.shape == (2, 32, 32, 3) and crops.dtype == np.uint8
    # 20 px square from x = 15 resized to 32: the ramp keeps its ends.
    assert abs(int(crops[0, 0, 0, 0]) - 15) <= 1 and abs(int(crops[0, 0, -1, 0]) - 34) <= 1
    assert crop_lesions(image, [], size=16).shape == (0, 16, 16, 3)
    with pytest.raises(ValueError):
        crop_context(image, [100, 100, 4, 4])


def test_view_of_a_source_crop_is_the_classifier_square():
    image = _ramp(200, 200)
    box = [90, 80, 14, 10]
    source = crop_context(image, box, size=98, context=3.5)  # 49 px -> 98 px, 2x
    view = view_crop(source, size=28)  # central 28 px of the 49 px square at 2x = 56 px
    expected = crop_context(image, box, size=28, context=2.0)
    assert np.abs(view.astype(int) - expected.astype(int)).max() <= 1


def test_augmented_view_is_seeded_and_keeps_the_lesion_centred():
    source = np.full((96, 96, 3), 200, np.uint8)
    yy, xx = np.mgrid[:96, :96]
    source[(yy - 47.5) ** 2 + (xx - 47.5) ** 2 <= 13.7 ** 2] = (60, 40, 30)  # the lesion
    one = augment_crop(source, rng=np.random.default_rng(3), size=32)
    two = augment_crop(source, rng=np.random.default_rng(3), size=32)
    assert one.shape == (32, 32, 3) and one.dtype == np.uint8
    np.testing.assert_array_equal(one, two)
    # The lesion (half the view) stays at the centre; the corners are skin.
    assert one[14:18, 14:18].mean() < one[:3, :3].mean() - 50


def test_crop_sets_concatenate():
    one = CropSet(np.zeros((2, 8, 8, 3), np.uint8), np.array([True, False]), np.ones(2, np.float32),
                  ["BCC", "NEV"], ["p1", "p2"], ["blend", "blend"], ["a", "a"])
    both = CropSet.concatenate([one, one])
    assert len(both) == 4 and both.patient == ["p1", "p2", "p1", "p2"]
    assert len(CropSet.concatenate([])) == 0
