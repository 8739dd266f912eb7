"""synth.pairs.motion: random viewpoint + non-rigid motion between visits."""
import numpy as np

from synth.pairs.motion import random_pair_transform, spline_lipschitz


def test_strength_zero_is_identity():
    transform = random_pair_transform((48, 32), rng=np.random.default_rng(3), strength=0.0)
    np.testing.assert_allclose(transform.flow(), 0, atol=1e-4)


def test_same_seed_same_transform():
    first = random_pair_transform((64, 48), rng=np.random.default_rng(11))
    second = random_pair_transform((64, 48), rng=np.random.default_rng(11))
    assert first.params == second.params
    np.testing.assert_array_equal(first.flow(), second.flow())


def test_median_displacement_in_documented_range():
    medians = [
        random_pair_transform((96, 96), rng=np.random.default_rng(seed)).displacement_stats()["median_diag"]
        for seed in range(30)
    ]
    assert 0.04 < np.median(medians) < 0.10
    weaker = [
        random_pair_transform((96, 96), rng=np.random.default_rng(seed), strength=0.3)
        .displacement_stats()["median_diag"]
        for seed in range(10)
    ]
    assert np.median(weaker) < np.median(medians)


def test_drawn_splines_stay_invertible_by_fixed_point():
    for seed in range(5):
        transform = random_pair_transform((64, 64), rng=np.random.default_rng(seed), strength=2.0)
        assert spline_lipschitz(transform) < 0.5
