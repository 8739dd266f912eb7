"""synth.pairs.transform: the mapping t0 -> t1, its flow, validity and backward map."""
import json

import numpy as np

from synth.pairs.motion import random_pair_transform
from synth.pairs.transform import PairTransform, identity_transform, make_pair_transform


def test_identity_gives_zero_flow():
    transform = identity_transform((40, 30))
    flow = transform.flow()
    assert flow.dtype == np.float32 and flow.shape == (30, 40, 2)
    assert np.all(flow == 0)
    assert transform.valid().all()


def test_translation_flow_convention():
    transform = make_pair_transform((32, 24), translation=(7, 0))
    flow = transform.flow()
    assert flow.dtype == np.float32 and flow.shape == (24, 32, 2)
    np.testing.assert_allclose(flow[..., 0], 7, atol=1e-5)
    np.testing.assert_allclose(flow[..., 1], 0, atol=1e-5)
    valid = transform.valid()
    assert not valid[:, -7:].any()
    assert valid[:, :-7].all()


def test_corner_offsets_move_the_corners_exactly():
    offsets = [[3, -2], [-4, 1], [2, 5], [-1, -3]]
    transform = make_pair_transform((50, 40), corner_offsets=offsets)
    corners = np.array([[0, 0], [49, 0], [49, 39], [0, 39]], float)
    np.testing.assert_allclose(transform.forward_points(corners), corners + offsets, atol=1e-4)
    np.testing.assert_allclose(transform.inverse_points(corners + offsets), corners, atol=1e-4)


def test_backward_map_inverts_forward_map():
    transform = random_pair_transform((80, 64), rng=np.random.default_rng(5))
    map_x, map_y = transform.backward_maps()
    source = np.stack([map_x.ravel(), map_y.ravel()], 1)
    ys, xs = np.mgrid[0:64, 0:80]
    target = np.stack([xs.ravel(), ys.ravel()], 1)
    np.testing.assert_allclose(transform.forward_points(source), target, atol=0.02)


def test_params_round_trip_through_json():
    first = random_pair_transform((64, 48), rng=np.random.default_rng(11))
    stored = json.loads(json.dumps(first.to_dict()))
    rebuilt = PairTransform.from_params(stored["size"], stored["params"])
    np.testing.assert_allclose(rebuilt.flow(), first.flow(), atol=1e-3)
