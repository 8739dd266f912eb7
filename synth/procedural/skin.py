"""Procedural body photos: skin of a Fitzpatrick type with shading, mottling, pores, skin
lines, freckles and hair, and optionally a non-skin background region (black padding, cloth or
wall) along one side, so skin segmentation matters, like the iToBoS tiles.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import cv2
import numpy as np

from synth.procedural.noise import fine_noise, smooth_noise

# Typical RGB of unexposed skin per Fitzpatrick type I..VI (approximate, from published
# colorimetry of skin types; only used as centres of a random draw).
FITZPATRICK_TONES = {
    1: (240, 205, 186),
    2: (228, 184, 158),
    3: (206, 158, 126),
    4: (172, 122, 88),
    5: (122, 82, 58),
    6: (76, 52, 40),
}
# Draw weights for the body skin type (the real sources here are mostly types I-III).
FITZPATRICK_WEIGHTS = np.array([0.2, 0.3, 0.25, 0.12, 0.08, 0.05])
BACKGROUNDS = ("none", "dark", "cloth", "wall")
_BACKGROUND_WEIGHTS = np.array([0.45, 0.2, 0.25, 0.1])


def _skin_texture(rng: np.random.Generator, size: tuple[int, int], tone: np.ndarray) -> np.ndarray:
    """Float RGB (H, W, 3) skin in 0..255, without freckles or background."""
    width, height = size
    shape = (height, width)
    # Multiplicative shading: smooth lighting over a curved surface (a cylinder-like falloff
    # along a random axis) plus large blobs.
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    axis = ((xs - width / 2) * math.cos(angle) + (ys - height / 2) * math.sin(angle)) / max(width, height)
    curvature = 1.0 - rng.uniform(0.1, 0.35) * (axis / 0.6) ** 2
    shading = curvature * np.exp(0.07 * smooth_noise(rng, shape, rng.uniform(2, 4)))
    # Mottling: redness / pigment variation at a few mm scale.
    mottling = smooth_noise(rng, shape, rng.uniform(30, 70))
    redness = np.clip(smooth_noise(rng, shape, rng.uniform(3, 8)), 0, None)
    # Pores and skin lines: fine noise, anisotropic blur for the lines.
    pores = fine_noise(rng, shape, 0.8)
    lines = rng.standard_normal(shape).astype(np.float32)
    line_angle = rng.uniform(0, 180)
    kernel = cv2.getRotationMatrix2D((7, 7), line_angle, 1.0)
    line_kernel = np.zeros((15, 15), np.float32)
    line_kernel[7, :] = 1.0
    line_kernel = cv2.warpAffine(line_kernel, kernel, (15, 15))
    lines = cv2.filter2D(lines, -1, line_kernel / max(line_kernel.sum(), 1e-6))
    lines /= lines.std() + 1e-6

    image = np.empty((height, width, 3), np.float32)
    brightness = shading * (1 + 0.015 * mottling)
    for channel in range(3):
        image[..., channel] = tone[channel] * brightness
    # diffuse reddish areas (erythema): red up, green/blue down a little
    image += (np.array([4.0, -2.5, -2.0]) * rng.uniform(0.0, 1.2))[None, None, :] * redness[..., None]
    texture = 2.5 * pores + 1.5 * lines
    image += texture[..., None] * np.array([1.0, 0.95, 0.9])
    # sparse darker pores
    num_pores = int(width * height / rng.uniform(250, 600))
    px = rng.integers(0, width, num_pores)
    py = rng.integers(0, height, num_pores)
    pore_map = np.zeros(shape, np.float32)
    pore_map[py, px] = rng.uniform(0.5, 1.0, num_pores)
    pore_map = cv2.GaussianBlur(pore_map, (0, 0), 0.7) * (2 * math.pi * 0.7**2)  # unit peak
    image -= (pore_map * 14.0)[..., None]
    return image


def _add_hair(rng: np.random.Generator, image: np.ndarray, skin: np.ndarray, *, count: int) -> None:
    """Draw ``count`` thin dark curved hairs (quadratic Bezier curves) on skin, in place."""
    height, width = skin.shape
    alpha = np.zeros((height, width), np.float32)
    length_scale = 0.12 * max(width, height)
    direction = rng.uniform(0, math.pi)  # hair on a body region shares a main direction
    t = np.linspace(0, 1, 24)[:, None]
    for _ in range(count):
        start = rng.uniform([0, 0], [width, height])
        angle = direction + rng.normal(0, 0.35)
        length = length_scale * rng.uniform(0.3, 1.2)
        end = start + length * np.array([math.cos(angle), math.sin(angle)])
        bend = (start + end) / 2 + rng.normal(0, 0.15 * length, 2)
        curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end
        cv2.polylines(alpha, [np.round(curve * 16).astype(np.int32)], False, float(rng.uniform(0.3, 0.7)),
                      1, cv2.LINE_AA, shift=4)
    alpha *= skin
    hair_colour = np.array([52.0, 38.0, 30.0]) * rng.uniform(0.7, 1.3)
    image[:] = image * (1 - alpha[..., None]) + hair_colour * alpha[..., None]


def _add_freckles(
    rng: np.random.Generator, image: np.ndarray, skin: np.ndarray, tone: np.ndarray, *, density: float
) -> np.ndarray:
    """Paint soft light-brown freckles on skin; return the (H, W) bool ignore mask around them."""
    height, width = skin.shape
    count = rng.poisson(density * width * height / 1e5)
    ignore = np.zeros((height, width), np.uint8)
    spots = np.zeros((height, width), np.float32)
    # freckles cluster: draw centres around a few cluster seeds
    seeds = rng.uniform([0, 0], [width, height], (max(1, rng.integers(1, 4)), 2))
    for _ in range(count):
        if rng.random() < 0.6:
            centre = seeds[rng.integers(len(seeds))] + rng.normal(0, 0.18 * max(width, height), 2)
        else:
            centre = rng.uniform([0, 0], [width, height])
        x, y = int(round(centre[0])), int(round(centre[1]))
        if not (0 <= x < width and 0 <= y < height) or not skin[y, x]:
            continue
        radius = float(rng.uniform(1.0, 3.2))
        axes = (max(1, int(round(radius * rng.uniform(0.7, 1.3)))), max(1, int(round(radius))))
        cv2.ellipse(spots, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.35, 0.9)), -1)
        cv2.circle(ignore, (x, y), int(math.ceil(radius)) + 3, 1, -1)
    spots = cv2.GaussianBlur(spots, (0, 0), 0.8)
    freckle_colour = tone * np.array([0.72, 0.62, 0.55])
    image[:] = image * (1 - spots[..., None] * 0.55) + freckle_colour * (spots[..., None] * 0.55)
    return ignore.astype(bool) & skin


def _background_region(rng: np.random.Generator, size: tuple[int, int], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(background mask bool (H, W), background float RGB (H, W, 3)) for a non-skin region
    along one side, bounded by a smooth silhouette curve."""
    width, height = size
    side = rng.integers(4)  # 0 left, 1 right, 2 top, 3 bottom
    along, across = (height, width) if side < 2 else (width, height)
    t = np.arange(along, dtype=np.float32)
    depth = rng.uniform(0.12, 0.35) * across
    curve = depth + 0.04 * across * smooth_noise(rng, (1, along), rng.uniform(1.0, 2.0))[0]
    curve += rng.uniform(-0.1, 0.1) * (t - along / 2)  # slanted silhouette
    grid = np.arange(across, dtype=np.float32)
    mask = grid[None, :] < curve[:, None]  # (along, across)
    if side == 1:
        mask = mask[:, ::-1]
    elif side >= 2:
        mask = mask.T  # (along, across) = (W, H) -> (H, W)
        if side == 3:
            mask = mask[::-1, :]
    shape = (height, width)
    if kind == "dark":
        colour = np.full(3, rng.uniform(0, 14))
        texture = 2.0 * fine_noise(rng, shape, 1.0)
        background = colour + texture[..., None]
    elif kind == "cloth":
        colour = rng.choice(np.array([[40, 52, 88], [70, 70, 74], [150, 146, 138], [110, 40, 44], [30, 30, 32]], float))
        colour = colour * rng.uniform(0.8, 1.2)
        folds = 1 + 0.18 * smooth_noise(rng, shape, rng.uniform(3, 8))
        ys, xs = np.mgrid[0:height, 0:width]
        weave = 4.0 * np.sin(xs * rng.uniform(1.2, 2.0)) * np.sin(ys * rng.uniform(1.2, 2.0))
        background = colour[None, None, :] * folds[..., None] + (weave + 3 * fine_noise(rng, shape, 0.7))[..., None]
    else:  # wall
        colour = np.full(3, rng.uniform(170, 225)) * np.array([1.0, 0.99, rng.uniform(0.92, 1.02)])
        background = colour * (1 + 0.05 * smooth_noise(rng, shape, 2))[..., None]
        background = background + fine_noise(rng, shape, 1.0)[..., None]
    return mask, background.astype(np.float32)


def procedural_body(
    *,
    rng: np.random.Generator,
    size: Sequence[int] = (1024, 768),
    fitzpatrick: int | None = None,
    background: str | None = None,
    freckle_density: float | None = None,
    hair_density: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw a procedural skin photo.

    Parameters
    ----------
    rng : numpy.random.Generator
    size : (W, H)
        Output size in pixels (texture scale follows iToBoS tiles, about 0.4 mm per pixel).
    fitzpatrick : int in 1..6, optional
        Skin type; drawn (weighted towards I-III) when omitted.
    background : {"none", "dark", "cloth", "wall"}, optional
        Non-skin region along one side; drawn when omitted.
    freckle_density : float, optional
        Expected freckles per 100 000 pixels; drawn in [2, 40] when omitted.
    hair_density : float, optional
        Hairs per 10 000 pixels; none or drawn in [0.2, 3] when omitted.

    Returns
    -------
    image : ndarray, uint8, shape (H, W, 3)
        RGB.
    skin : ndarray, bool, shape (H, W)
        True on skin.
    ignore : ndarray, bool, shape (H, W)
        True around freckles (skin spots that are not labelled lesions).
    """
    width, height = (int(v) for v in size)
    if width < 8 or height < 8:
        raise ValueError(f"size must be at least 8x8, got {size}")
    if fitzpatrick is None:
        fitzpatrick = int(rng.choice(6, p=FITZPATRICK_WEIGHTS)) + 1
    if fitzpatrick not in FITZPATRICK_TONES:
        raise ValueError(f"fitzpatrick must be 1..6, got {fitzpatrick}")
    if background is None:
        background = str(rng.choice(BACKGROUNDS, p=_BACKGROUND_WEIGHTS))
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    if freckle_density is None:
        freckle_density = float(rng.uniform(2, 40))

    tone = np.asarray(FITZPATRICK_TONES[fitzpatrick], np.float32) * rng.uniform(0.93, 1.05)
    tone = tone * np.exp(rng.normal(0, 0.03, 3)).astype(np.float32)
    image = _skin_texture(rng, (width, height), tone)
    skin = np.ones((height, width), bool)
    if background != "none":
        region, back = _background_region(rng, (width, height), background)
        skin = ~region
        # Skin darkens towards the silhouette (surface turning away from the camera).
        distance = cv2.distanceTransform(skin.astype(np.uint8), cv2.DIST_L2, 5)
        falloff = 1 - 0.35 * np.exp(-distance / (0.03 * max(width, height)))
        image *= falloff[..., None]
        alpha = cv2.GaussianBlur(skin.astype(np.float32), (0, 0), 1.0)[..., None]
        image = image * alpha + back * (1 - alpha)
    ignore = _add_freckles(rng, image, skin, tone, density=freckle_density)
    if hair_density is None:
        hair_density = float(rng.choice([0.0, rng.uniform(0.2, 3.0)], p=[0.4, 0.6]))
    _add_hair(rng, image, skin, count=int(hair_density * width * height / 1e4))
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), skin, ignore


def procedural_body_records(n: int, *, seed: int = 0, mm_per_px: float = 0.4) -> list[dict[str, Any]]:
    """Catalogue of ``n`` procedural body photos.

    Returns
    -------
    list of dict
        {"id": "proc-body-003", "index": 3, "source": "procedural", "fitzpatrick": int,
        "background": "none" | "dark" | "cloth" | "wall", "mm_per_px": float, "seed": int}.
    """
    rng = np.random.default_rng([int(seed), 2])
    records = []
    for index in range(n):
        records.append(
            {
                "id": f"proc-body-{index:03d}",
                "index": index,
                "source": "procedural",
                "fitzpatrick": int(rng.choice(6, p=FITZPATRICK_WEIGHTS)) + 1,
                "background": str(rng.choice(BACKGROUNDS, p=_BACKGROUND_WEIGHTS)),
                "mm_per_px": float(mm_per_px),
                "seed": int(rng.integers(2**31)),
            }
        )
    return records


def render_procedural_body(
    record: dict[str, Any], size: Sequence[int] = (1024, 768), *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one body record at ``size`` (W, H); deterministic per record, size and seed.

    Returns
    -------
    image, skin, ignore
        As :func:`procedural_body`.
    """
    rng = np.random.default_rng([int(record["seed"]), int(seed)])
    return procedural_body(rng=rng, size=size, fitzpatrick=int(record["fitzpatrick"]), background=record["background"])
