"""Tests for synth.pairs: pair transforms, warps, illumination and lesion-change plans."""
import json

import cv2
import numpy as np
import pytest

from synth import pairs


def _smooth_noise(height, width, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    image = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(cv2.GaussianBlur(image, (0, 0), 2.0), 0, 255).astype(np.uint8)


def test_identity_gives_zero_flow_and_same_image():
    transform = pairs.identity_transform((40, 30))
    flow = transform.flow()
    assert flow.dtype == np.float32 and flow.shape == (30, 40, 2)
    assert np.all(flow == 0)
    assert transform.valid().all()
    image = _smooth_noise(30, 40)
    assert np.array_equal(pairs.warp_image(image, transform), image)


def test_strength_zero_is_identity():
    transform = pairs.random_pair_transform((48, 32), rng=np.random.default_rng(3), strength=0.0)
    np.testing.assert_allclose(transform.flow(), 0, atol=1e-4)


def test_translation_flow_convention():
    transform = pairs.make_pair_transform((32, 24), translation=(7, 0))
    flow = transform.flow()
    assert flow.dtype == np.float32 and flow.shape == (24, 32, 2)
    np.testing.assert_allclose(flow[..., 0], 7, atol=1e-5)
    np.testing.assert_allclose(flow[..., 1], 0, atol=1e-5)
    valid = transform.valid()
    assert not valid[:, -7:].any()
    assert valid[:, :-7].all()
    # t1 = t0 shifted right by 7: image1[:, x + 7] == image0[:, x]
    image = _smooth_noise(24, 32)
    image1 = pairs.warp_image(image, transform)
    assert np.array_equal(image1[:, 7:], image[:, :-7])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warp_back_by_flow_matches_t0(seed):
    image = _smooth_noise(96, 128, seed)
    transform = pairs.random_pair_transform((128, 96), rng=np.random.default_rng(seed))
    image1 = pairs.warp_image(image, transform)
    back = pairs.warp_backward(image1, transform.flow())
    valid = transform.valid()
    # stay away from the frame edge, where t1 was filled by border extrapolation
    valid = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert valid.mean() > 0.3
    error = np.abs(back.astype(float) - image.astype(float))[valid]
    assert error.mean() < 3.0


def test_backward_map_inverts_forward_map():
    transform = pairs.random_pair_transform((80, 64), rng=np.random.default_rng(5))
    map_x, map_y = transform.backward_maps()
    source = np.stack([map_x.ravel(), map_y.ravel()], 1)
    ys, xs = np.mgrid[0:64, 0:80]
    target = np.stack([xs.ravel(), ys.ravel()], 1)
    np.testing.assert_allclose(transform.forward_points(source), target, atol=0.02)


def test_same_seed_same_transform_and_params_roundtrip():
    first = pairs.random_pair_transform((64, 48), rng=np.random.default_rng(11))
    second = pairs.random_pair_transform((64, 48), rng=np.random.default_rng(11))
    assert first.params == second.params
    np.testing.assert_array_equal(first.flow(), second.flow())
    stored = json.loads(json.dumps(first.to_dict()))
    rebuilt = pairs.PairTransform.from_params(stored["size"], stored["params"])
    np.testing.assert_allclose(rebuilt.flow(), first.flow(), atol=1e-3)


def test_median_displacement_in_documented_range():
    medians = [
        pairs.random_pair_transform((96, 96), rng=np.random.default_rng(seed)).displacement_stats()["median_diag"]
        for seed in range(30)
    ]
    assert 0.04 < np.median(medians) < 0.10
    weaker = [
        pairs.random_pair_transform((96, 96), rng=np.random.default_rng(seed), strength=0.3)
        .displacement_stats()["median_diag"]
        for seed in range(10)
    ]
    assert np.median(weaker) < np.median(medians)


def test_warp_labels_nearest_keeps_values():
    labels = np.zeros((40, 40), np.uint16)
    labels[10:20, 10:20] = 3
    labels[25:35, 5:15] = 1
    transform = pairs.random_pair_transform((40, 40), rng=np.random.default_rng(2))
    warped = pairs.warp_image(labels, transform, interpolation="nearest", border_mode=cv2.BORDER_CONSTANT)
    assert warped.dtype == np.uint16
    assert set(np.unique(warped)) <= {0, 1, 3}


def test_warp_backward_rejects_bad_flow():
    with pytest.raises(ValueError):
        pairs.warp_backward(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 12, 2), np.float32))


def test_change_illumination_reproducible():
    image = _smooth_noise(32, 48)
    changed, params = pairs.change_illumination(image, rng=np.random.default_rng(4))
    assert changed.dtype == np.uint8 and changed.shape == image.shape
    assert not np.array_equal(changed, image)
    json.dumps(params)
    np.testing.assert_array_equal(pairs.apply_illumination(image, params), changed)
    same, _ = pairs.change_illumination(image, rng=np.random.default_rng(4), strength=0.0)
    assert np.abs(same.astype(int) - image.astype(int)).max() <= 1


def test_draw_lesion_changes():
    plans = pairs.draw_lesion_changes(200, rng=np.random.default_rng(0), malignant=[i % 2 == 0 for i in range(200)])
    assert len(plans) == 200
    json.dumps(plans)
    states = [plan["state"] for plan in plans]
    assert set(states) <= set(pairs.LESION_STATES)
    assert states.count("same") > 50 and "grown" in states and "new" in states
    for plan in plans:
        assert len(plan["colour_shift"]) == 3
        if plan["state"] == "grown":
            assert plan["scale"] > 1
        elif plan["state"] == "shrunk":
            assert plan["scale"] < 1
        else:
            assert plan["scale"] == 1
    again = pairs.draw_lesion_changes(200, rng=np.random.default_rng(0), malignant=[i % 2 == 0 for i in range(200)])
    assert again == plans
    with pytest.raises(ValueError):
        pairs.draw_lesion_changes(3, rng=np.random.default_rng(0), malignant=[True])
