"""Shared image and flow helpers: input check, resizing, padding, flow resize and sampling."""
import cv2
import numpy as np
import pytest

from lesiontrack.imaging import check_image, pad_to_stride, resize_flow, resize_image, sample_flow


# --------------------------------------------------------------------------- check_image


@pytest.mark.parametrize("bad, message", [
    (np.zeros((32, 32, 3), np.float32), "image0 must be uint8, got float32"),
    (np.zeros((32, 32), np.uint8), r"image0 must be RGB of shape \(H, W, 3\), got \(32, 32\)"),
    (np.zeros((32, 32, 4), np.uint8), r"got \(32, 32, 4\)"),
    (np.zeros((4, 40, 3), np.uint8), r"image0 is too small \(40x4\); need 8x8"),
])
def test_check_image_names_the_problem(bad, message):
    with pytest.raises(ValueError, match=message):
        check_image(bad, "image0")


def test_check_image_passes_good_images_through():
    image = np.zeros((8, 9, 3), np.uint8)
    assert check_image(image) is image
    assert check_image(np.zeros((1, 3, 3), np.uint8), min_side=1).shape == (1, 3, 3)


# --------------------------------------------------------------------------- padding, resizing


def test_pad_to_stride_table():
    padded, size = pad_to_stride(np.ones((5, 9), np.uint8), 4, mode="constant", constant=255)
    assert padded.shape == (8, 12) and size == (5, 9)
    assert padded[5:].min() == 255 and padded[:, 9:].min() == 255 and padded[:5, :9].max() == 1
    ramp = np.arange(6, dtype=np.float32).reshape(1, 6, 1).repeat(3, 0)
    reflected, _ = pad_to_stride(ramp, 4, mode="reflect")
    assert reflected.shape == (4, 8, 1)
    np.testing.assert_array_equal(reflected[0, 6:, 0], [4, 3])   # reflect: 5 | 4 3
    np.testing.assert_array_equal(reflected[3, :6, 0], ramp[1, :, 0])
    # A pad as long as the side cannot reflect: the edge is repeated instead.
    tiny, _ = pad_to_stride(np.full((1, 1, 3), 7, np.uint8), 8)
    assert tiny.shape == (8, 8, 3) and (tiny == 7).all()
    same, size = pad_to_stride(np.zeros((8, 16)), 8)
    assert same.shape == (8, 16) and size == (8, 16)


def test_resize_image_interpolation():
    image = np.zeros((4, 4), np.uint8)
    image[:2, :2] = 200
    # Shrinking averages areas: each output pixel is the mean of a 2x2 block.
    np.testing.assert_array_equal(resize_image(image, (2, 2)), [[200, 0], [0, 0]])
    assert resize_image(image, (4, 4)) is image
    assert resize_image(image, (8, 6)).shape == (6, 8)


# --------------------------------------------------------------------------- resize_flow


def test_resize_flow_constant_flow_scales_with_the_image():
    flow = np.tile(np.array([3.0, -2.0], np.float32), (32, 24, 1))
    resized = resize_flow(flow, (48, 64))  # 2x in both directions
    assert resized.shape == (64, 48, 2) and resized.dtype == np.float32
    np.testing.assert_allclose(resized, np.tile([6.0, -4.0], (64, 48, 1)), atol=1e-6)
    half = resize_flow(flow, (12, 8))  # 1/2 across, 1/4 down
    np.testing.assert_allclose(half[..., 0], 1.5, atol=1e-6)
    np.testing.assert_allclose(half[..., 1], -0.5, atol=1e-6)


def test_resize_flow_affine_flow_known_answer():
    # f(x, y) = (0.1 x + 2, -0.05 y) resized 2x. A pixel X of the new grid is the point
    # x = (X + 0.5) / 2 - 0.5 of the old one (cv2.resize); it moves to x + f(x), which is
    # (x + f(x) + 0.5) * 2 - 0.5 on the new grid. Bilinear resampling of an affine field is
    # exact inside the grid.
    ys, xs = np.mgrid[0:20, 0:30].astype(np.float32)
    flow = np.stack([0.1 * xs + 2.0, -0.05 * ys], -1)
    s = 2.0
    resized = resize_flow(flow, (60, 40))
    Y, X = np.mgrid[0:40, 0:60].astype(np.float64)
    x = (X + 0.5) / s - 0.5
    y = (Y + 0.5) / s - 0.5
    expected_x = ((x + 0.1 * x + 2.0) + 0.5) * s - 0.5 - X
    expected_y = ((y - 0.05 * y) + 0.5) * s - 0.5 - Y
    inside = (slice(1, -1), slice(1, -1))  # cv2.resize clamps at the outer half pixel
    np.testing.assert_allclose(resized[..., 0][inside], expected_x[inside], atol=1e-4)
    np.testing.assert_allclose(resized[..., 1][inside], expected_y[inside], atol=1e-4)


def test_resize_flow_into_a_larger_image_follows_cv2_resize():
    # image1 is image0 enlarged 2x by cv2.resize; the zero flow between image0 and image1
    # brought back to image0's size becomes, in image1's pixels, x1 = 2 x0 + 0.5.
    ramp = np.tile(np.arange(16, dtype=np.float32), (12, 1))
    big = cv2.resize(ramp, (32, 24), interpolation=cv2.INTER_LINEAR)
    flow = resize_flow(np.zeros((12, 16, 2), np.float32), (16, 12), target_size=(32, 24))
    columns, rows = np.meshgrid(np.arange(16), np.arange(12))
    np.testing.assert_allclose(flow[..., 0], columns + 0.5)
    np.testing.assert_allclose(flow[..., 1], rows + 0.5)
    # Sampling image1 where the flow points gives back image0's value (away from the border).
    targets = np.stack([columns + flow[..., 0], rows + flow[..., 1]], -1).reshape(-1, 2)
    sampled = sample_flow(np.dstack([big, big]), targets)[:, 0].reshape(12, 16)
    np.testing.assert_allclose(sampled[1:-1, 1:-1], ramp[1:-1, 1:-1], atol=1e-5)


def test_resize_flow_identity_and_shrinking_target():
    flow = np.random.default_rng(0).normal(size=(10, 12, 2)).astype(np.float32)
    np.testing.assert_array_equal(resize_flow(flow, (12, 10)), flow)
    # image1 half the size: x1 = (x0 + dx + 0.5) / 2 - 0.5.
    mapped = resize_flow(flow, (12, 10), target_size=(6, 5))
    columns = np.arange(12)[None, :]
    np.testing.assert_allclose(mapped[..., 0], (columns + flow[..., 0] + 0.5) / 2 - 0.5 - columns,
                               atol=1e-5)


# --------------------------------------------------------------------------- sample_flow


def test_sample_flow_bilinear_and_clamped():
    flow = np.zeros((3, 4, 2))
    flow[..., 0] = np.arange(4)[None, :]        # dx = x
    flow[..., 1] = 10 * np.arange(3)[:, None]   # dy = 10 y
    points = np.array([[0.5, 0.0], [3.0, 2.0], [1.25, 1.5], [9.0, -1.0]])
    np.testing.assert_allclose(sample_flow(flow, points),
                               [[0.5, 0.0], [3.0, 20.0], [1.25, 15.0], [3.0, 0.0]])
    assert sample_flow(flow, np.zeros((0, 2))).shape == (0, 2)
