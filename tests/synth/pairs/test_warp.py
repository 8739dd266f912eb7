"""synth.pairs.warp: rendering t1 from t0, and t1 back onto t0 by a flow."""
import cv2
import numpy as np
import pytest

from synth.pairs.motion import random_pair_transform
from synth.pairs.transform import identity_transform, make_pair_transform
from synth.pairs.warp import warp_backward, warp_image


def _smooth_noise(height, width, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    image = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(cv2.GaussianBlur(image, (0, 0), 2.0), 0, 255).astype(np.uint8)


def test_identity_gives_the_same_image():
    image = _smooth_noise(30, 40)
    assert np.array_equal(warp_image(image, identity_transform((40, 30))), image)


def test_translation_shifts_the_image():
    # t1 = t0 shifted right by 7: image1[:, x + 7] == image0[:, x]
    image = _smooth_noise(24, 32)
    image1 = warp_image(image, make_pair_transform((32, 24), translation=(7, 0)))
    assert np.array_equal(image1[:, 7:], image[:, :-7])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warp_back_by_flow_matches_t0(seed):
    image = _smooth_noise(96, 128, seed)
    transform = random_pair_transform((128, 96), rng=np.random.default_rng(seed))
    image1 = warp_image(image, transform)
    back = warp_backward(image1, transform.flow())
    valid = transform.valid()
    # stay away from the frame edge, where t1 was filled by border extrapolation
    valid = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert valid.mean() > 0.3
    error = np.abs(back.astype(float) - image.astype(float))[valid]
    assert error.mean() < 3.0


def test_warp_labels_nearest_keeps_values():
    labels = np.zeros((40, 40), np.uint16)
    labels[10:20, 10:20] = 3
    labels[25:35, 5:15] = 1
    transform = random_pair_transform((40, 40), rng=np.random.default_rng(2))
    warped = warp_image(labels, transform, interpolation="nearest", border_mode=cv2.BORDER_CONSTANT)
    assert warped.dtype == np.uint16
    assert set(np.unique(warped)) <= {0, 1, 3}


def test_warp_backward_rejects_bad_flow():
    with pytest.raises(ValueError):
        warp_backward(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 12, 2), np.float32))
