"""synth.pairs.illumination: light and white-balance change between visits."""
import json

import numpy as np

from synth.pairs.illumination import apply_illumination, change_illumination


def test_change_illumination_reproducible():
    image = np.random.default_rng(0).integers(40, 200, (32, 48, 3)).astype(np.uint8)
    changed, params = change_illumination(image, rng=np.random.default_rng(4))
    assert changed.dtype == np.uint8 and changed.shape == image.shape
    assert not np.array_equal(changed, image)
    json.dumps(params)
    np.testing.assert_array_equal(apply_illumination(image, params), changed)
    same, _ = change_illumination(image, rng=np.random.default_rng(4), strength=0.0)
    assert np.abs(same.astype(int) - image.astype(int)).max() <= 1


def test_uniform_gain_scales_every_pixel():
    image = np.full((4, 6, 3), 100, np.uint8)
    params = {"gradient": 0.0, "gradient_angle_deg": 0.0, "brightness": float(np.log(1.5)),
              "colour_gains": [1.0, 1.0, 0.5], "blobs": []}
    np.testing.assert_array_equal(apply_illumination(image, params)[0, 0], [150, 150, 75])
