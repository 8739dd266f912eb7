"""Tests for synth.blend: Poisson image editing and the lesion paste."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from synth.blend import (blend_lesion, lesion_padding, poisson_blend, prepare_lesion_source,
                         seamless_clone)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _noise(shape, seed=0, low=30, high=200):
    return np.random.default_rng(seed).integers(low, high, shape).astype(np.uint8)


def _disk(size, radius):
    yy, xx = np.mgrid[:size, :size]
    centre = (size - 1) / 2
    return (yy - centre) ** 2 + (xx - centre) ** 2 <= radius ** 2


def test_outside_mask_unchanged_and_input_untouched():
    destination = _noise((40, 50, 3), seed=1)
    before = destination.copy()
    source = _noise((20, 20, 3), seed=2)
    mask = _disk(20, 7)
    result = poisson_blend(destination, source, mask, offset=(10, 5))
    assert result.dtype == np.uint8 and result.shape == destination.shape
    np.testing.assert_array_equal(destination, before)
    placed = np.zeros((40, 50), bool)
    placed[5:25, 10:30] = mask
    np.testing.assert_array_equal(result[~placed], destination[~placed])
    assert (result[placed] != destination[placed]).any()


def test_follows_source_gradient_exactly():
    # Destination = source + 20 on the boundary: the unique solution of eq. 7 is source + 20.
    source = _noise((40, 50, 3), seed=3)
    destination = (source.astype(np.int16) + 20).astype(np.uint8)
    destination[10:30, 10:40] = _noise((20, 30, 3), seed=4)  # garbage inside the mask
    mask = np.zeros((40, 50), bool)
    mask[5:35, 5:45] = True
    result = poisson_blend(destination, source, mask, offset=(0, 0))
    error = np.abs(result.astype(int) - source.astype(int) - 20)
    assert error[mask].max() <= 1


def test_constant_offset_source_gives_destination():
    # v = grad(destination + c) = grad(destination) with Dirichlet = destination: f = destination.
    destination = _noise((30, 30, 3), seed=5)
    source = (destination.astype(np.int16) + 25).astype(np.uint8)
    mask = _disk(30, 10)
    result = poisson_blend(destination, source, mask, offset=(0, 0))
    assert np.abs(result.astype(int) - destination.astype(int)).max() <= 1


def test_laplacian_matches_source_inside():
    destination = np.full((48, 48, 3), 120, np.uint8)
    yy, xx = np.mgrid[:48, :48]
    source = np.stack([100 + 40 * np.sin(xx / 5.0) * np.cos(yy / 7.0)] * 3, -1).astype(np.uint8)
    mask = _disk(48, 18)
    result = poisson_blend(destination, source, mask, offset=(0, 0)).astype(float)
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    lap_result = cv2.Laplacian(result[..., 0], cv2.CV_64F, ksize=1)
    lap_source = cv2.Laplacian(source[..., 0].astype(float), cv2.CV_64F, ksize=1)
    assert np.abs(lap_result - lap_source)[inner].mean() < 1.5


@pytest.mark.parametrize("offset", [(-8, -6), (40, 30), (-5, 32), (45, -9)])
def test_mask_over_image_border(offset):
    destination = _noise((40, 50, 3), seed=6)
    source = _noise((20, 20, 3), seed=7)
    mask = np.ones((20, 20), bool)  # touches every source edge too
    result = poisson_blend(destination, source, mask, offset=offset)
    assert result.shape == destination.shape
    placed = np.zeros((40, 50), bool)
    x0, y0 = offset
    placed[max(y0, 0):y0 + 20, max(x0, 0):x0 + 20] = True
    np.testing.assert_array_equal(result[~placed], destination[~placed])


def test_mask_covering_whole_destination():
    # No Dirichlet data: the solution is the source plus the constant that brings its mean to
    # the destination's (the only freedom left, fixed by the pull towards the destination).
    destination = _noise((12, 15, 3), seed=8, low=100, high=200)
    source = _noise((12, 15, 3), seed=9, low=60, high=120)
    result = poisson_blend(destination, source, np.ones((12, 15), bool), offset=(0, 0))
    shift = (destination.astype(float) - source).mean(axis=(0, 1))
    expected = source + shift
    assert np.abs(result - expected).max() <= 1


def _placed(mask, shape, center):
    """``mask`` in destination coordinates, as the blends place it at ``center`` (x, y)."""
    out = np.zeros(shape, bool)
    y0, x0 = center[1] - mask.shape[0] // 2, center[0] - mask.shape[1] // 2
    out[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]] = mask
    return out


@pytest.mark.parametrize("rows", [1, 2, 3])
@pytest.mark.parametrize("width", [1, 5, 8])
def test_thin_masks(rows, width):
    # Destination = source + 20 around the mask, garbage inside it: the unique solution of
    # eq. 7 on the mask is source + 20.
    source = _noise((rows + 4, width + 4, 3), seed=11)
    mask = np.zeros(source.shape[:2], bool)
    mask[2:2 + rows, 2:2 + width] = True
    destination = _noise((30, 31, 3), seed=10)
    box = _placed(np.ones(source.shape[:2], bool), (30, 31), (15, 15))
    destination[box] = (source.astype(np.int16) + 20).reshape(-1, 3)
    placed = _placed(mask, (30, 31), (15, 15))
    destination[placed] = _noise((int(placed.sum()), 3), seed=12)
    result = poisson_blend(destination, source, mask, center=(15, 15))
    expected = destination.astype(int)
    expected[placed] = source[mask].astype(int) + 20
    assert result.dtype == np.uint8 and np.abs(result.astype(int) - expected).max() <= 1
    # cv2.seamlessClone (thickened to 3 px where thinner, as it requires) changes no pixel
    # outside the mask.
    reference = seamless_clone(destination, source, mask, (15, 15))
    assert reference.dtype == np.uint8
    np.testing.assert_array_equal(reference[~placed], destination[~placed])


@pytest.mark.parametrize("size", [(7, 9), (13, 4), (33, 65), (1, 1)])
def test_odd_roi_sizes(size):
    # Source with a one-pixel frame of 100 on flat 128 skin: source + 28 solves eq. 7 exactly
    # (its gradient inside, the destination across the frame), with plain and mixed
    # gradients alike (flat skin never has the stronger gradient).
    destination = np.full((70, 80, 3), 128, np.uint8)
    source = _noise(size + (3,), seed=13, low=40, high=160)
    source[[0, -1]] = 100
    source[:, [0, -1]] = 100
    mask = np.ones(size, bool)
    placed = _placed(mask, (70, 80), (40, 35))
    expected = destination.astype(int)
    expected[placed] = source.reshape(-1, 3).astype(int) + 28
    for mixed in (False, True):
        result = poisson_blend(destination, source, mask, center=(40, 35), mixed=mixed)
        assert np.abs(result.astype(int) - expected).max() <= 1, f"mixed={mixed}"
    reference = seamless_clone(destination, source, mask, (40, 35))
    np.testing.assert_array_equal(reference[~placed], destination[~placed])


def test_seamless_clone_near_border_does_not_raise():
    # The source hangs over the left and bottom edges: the ROI is clipped 3 px inside the
    # destination, and only pixels there may change.
    destination = _noise((40, 40, 3), seed=14)
    source = _noise((20, 20, 3), seed=15)
    result = seamless_clone(destination, source, np.ones((20, 20), bool), (2, 38))
    allowed = np.zeros((40, 40), bool)
    allowed[28:37, 3:12] = True  # rows 28-47 and columns -8-11 of the source, kept 3 px in
    np.testing.assert_array_equal(result[~allowed], destination[~allowed])
    assert (result[allowed] != destination[allowed]).any()
    # A flat patch on flat skin gives the skin back.
    flat = seamless_clone(np.full((40, 40, 3), 128, np.uint8), np.full((20, 20, 3), 100, np.uint8),
                          np.ones((20, 20), bool), (2, 38))
    assert np.abs(flat.astype(int) - 128).max() <= 1


def test_prepare_lesion_source_shapes_and_fill():
    lesion = np.zeros((21, 21, 3), np.uint8)
    mask = _disk(21, 8)
    lesion[mask] = (60, 40, 30)
    pad = lesion_padding(3)
    patch = np.full((21 + 2 * pad, 21 + 2 * pad, 3), 200, np.uint8)
    source, blend_mask = prepare_lesion_source(lesion, mask, patch, margin_px=3, tone_match=0)
    assert source.shape == patch.shape and blend_mask.shape == patch.shape[:2]
    assert blend_mask.dtype == bool
    # No black left from the crop's background; mask at least 2 px from every edge.
    assert source.min() >= 30
    assert not blend_mask[:2].any() and not blend_mask[-2:].any()
    assert not blend_mask[:, :2].any() and not blend_mask[:, -2:].any()
    inner = np.pad(mask, pad)
    assert (blend_mask & ~inner).any() and blend_mask[inner].all()


def _contrast(image, lesion_region):
    ring = (cv2.dilate(lesion_region.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0) & ~lesion_region
    return image[ring].mean() - image[lesion_region].mean()


def test_blended_dark_disk_stays_visible():
    skin = np.zeros((80, 80, 3), np.uint8)
    skin[:] = (190, 150, 130)
    skin = np.clip(skin.astype(int) + _noise((80, 80, 3), 16, 0, 8), 0, 255).astype(np.uint8)
    lesion = np.zeros((21, 21, 3), np.uint8)  # PAD-UFES style: black outside the mask
    mask = _disk(21, 9)
    lesion[mask] = (90, 60, 45)
    lesion_contrast = np.array((190, 150, 130)).mean() - np.array((90, 60, 45)).mean()
    result, lesion_region, blend_region = blend_lesion(skin, lesion, mask, (40, 40),
                                                       tone_match=0.6)
    assert lesion_region.sum() == mask.sum()
    assert _contrast(result.astype(float), lesion_region) > 0.4 * lesion_contrast
    np.testing.assert_array_equal(result[~blend_region], skin[~blend_region])
    # A blend over the lesion mask alone loses the border step: the lesion vanishes.
    naive = poisson_blend(skin, lesion, mask, center=(40, 40))
    assert _contrast(naive.astype(float), lesion_region) < 0.2 * lesion_contrast


def test_blend_lesion_at_image_corner():
    skin = np.full((50, 60, 3), 180, np.uint8)
    lesion = np.zeros((15, 15, 3), np.uint8)
    mask = _disk(15, 6)
    lesion[mask] = 70
    result, lesion_region, _ = blend_lesion(skin, lesion, mask, (1, 48))
    assert result.shape == skin.shape
    assert 0 < lesion_region.sum() < mask.sum()
    assert result[lesion_region].mean() < 150


def test_real_lesions_on_itobos(tmp_path):
    lesions = DATA / "lesions" / "pad-ufes-20"
    bodies = DATA / "bodies" / "itobos"
    if not lesions.is_dir() or not bodies.is_dir():
        pytest.skip(f"real data not found at {DATA}")
    from synth.io import read_image, read_mask

    body = read_image(sorted(bodies.glob("*.jpg"))[3])
    out = body.copy()
    images = sorted((lesions / "images").glob("*.jpg"))[:4]
    for k, (path, diameter) in enumerate(zip(images, (15, 25, 40, 60))):
        image = read_image(path)
        mask = read_mask(lesions / "masks" / (path.stem + ".png"))
        scale = diameter / max(image.shape[:2])
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        center = (100 + 120 * k, 150)
        out, region, _ = blend_lesion(out, image, mask, center)
        # The lesion differs from the skin it was pasted on.
        assert np.abs(out[region].astype(float) - body[region].astype(float)).mean() > 3
    cv2.imwrite(str(tmp_path / "blend.png"), cv2.cvtColor(out, cv2.COLOR_RGB2BGR))


def test_lesion_with_black_outside_its_mask_leaves_no_dark_pixel_outside():
    """No halo or rim: the black pixels outside a PAD-UFES-20 style mask never reach the blend."""
    skin = np.full((80, 80, 3), (205, 160, 140), np.uint8)
    lesion = np.zeros((21, 21, 3), np.uint8)             # black outside the mask
    yy, xx = np.mgrid[:21, :21]
    mask = (xx - 10) ** 2 + (yy - 10) ** 2 <= 64
    lesion[mask] = (150, 100, 80)
    for size in (21, 7):                                 # with and without the rim erosion
        image = cv2.resize(lesion, (size, size), interpolation=cv2.INTER_AREA)
        small = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
        out, region, _ = blend_lesion(skin, image, small, (40, 40))
        outside = ~region
        assert np.abs(out[outside].astype(int) - skin[outside]).max() <= 1
        assert out[region].mean() < 190                  # the lesion itself is there
        # With optical blur the edge softens outwards, by lesion colour only: every pixel
        # outside lies between the lesion's and the skin's colour, nothing darker.
        soft, region, _ = blend_lesion(skin, image, small, (40, 40), blur_sigma=1.5)
        outside = soft[~region].astype(int)
        assert (outside >= np.array([150, 100, 80]) - 1).all() and (outside <= skin[0, 0] + 1).all()
        assert (soft[~region] != skin[0, 0]).any(axis=1).sum() > 0


def test_tone_match_of_a_nearly_black_rim_is_bounded():
    """A mask reaching over a crop's black background must not be scaled into a bright ring."""
    skin = np.full((60, 60, 3), 200, np.uint8)
    lesion = np.full((15, 15, 3), 5, np.uint8)
    mask = np.ones((15, 15), bool)
    out, region, _ = blend_lesion(skin, lesion, mask, (30, 30), tone_match=0.6)
    inner = cv2.erode(region.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # past the feather
    # At most 2.5x per channel, to the power tone_match: 5 * 2.5 ** 0.6 = 8.7 (unclipped: 41).
    assert inner.sum() >= 49 and out[inner].max() <= 10
