"""synth.procedural.skin: procedural body photos."""
import json

import numpy as np
import pytest

from synth import procedural


def test_body_shapes_dtypes_and_coverage():
    image, skin, ignore = procedural.procedural_body(rng=np.random.default_rng(0), size=(96, 64))
    assert image.dtype == np.uint8 and image.shape == (64, 96, 3)
    assert skin.dtype == bool and skin.shape == (64, 96)
    assert ignore.dtype == bool and ignore.shape == (64, 96)
    assert not (ignore & ~skin).any()


@pytest.mark.parametrize("background", procedural.BACKGROUNDS)
def test_body_skin_covers_most_of_image(background):
    image, skin, _ = procedural.procedural_body(
        rng=np.random.default_rng(1), size=(128, 96), background=background, fitzpatrick=3
    )
    assert skin.mean() > 0.6
    if background == "none":
        assert skin.all()
    else:
        assert not skin.all()
        # skin and background differ in colour on average
        assert np.abs(image[skin].mean(0) - image[~skin].mean(0)).max() > 10


def test_body_freckles_in_ignore_mask():
    _, _, ignore = procedural.procedural_body(
        rng=np.random.default_rng(2), size=(160, 120), background="none", freckle_density=200
    )
    assert ignore.any()


def test_body_deterministic_per_record():
    records = procedural.procedural_body_records(3, seed=5)
    assert records == procedural.procedural_body_records(3, seed=5)
    json.dumps(records)
    first = procedural.render_procedural_body(records[1], (64, 48))
    second = procedural.render_procedural_body(records[1], (64, 48))
    for a, b in zip(first, second):
        assert np.array_equal(a, b)
    other = procedural.render_procedural_body(records[2], (64, 48))
    assert not np.array_equal(first[0], other[0])


def test_body_rejects_bad_arguments():
    with pytest.raises(ValueError):
        procedural.procedural_body(rng=np.random.default_rng(0), size=(32, 32), fitzpatrick=7)
    with pytest.raises(ValueError):
        procedural.procedural_body(rng=np.random.default_rng(0), size=(32, 32), background="sky")
