"""Heavy, seeded augmentation of lesion crops, body crops and whole images.

Hair (:func:`hair_layer`, :func:`apply_hair`) is drawn over skin and blended lesions alike
and changes no label; :func:`hairiness` scores how hairy a photo already is.

Every function takes an explicit ``rng`` (``numpy.random.Generator``) and returns, beside its
output, a JSON-serialisable ``params`` dict of everything it drew, so a dataset record can say
exactly how each sample was made.

Skin tone is described by the individual typology angle (ITA, Chardon, Dupont and Ruiz 1991),
``ITA = arctan((L* - 50) / b*) * 180 / pi`` in CIELAB.  The six ITA categories of Chardon et al.
(extended by Del Bino et al. 2006) are mapped to Fitzpatrick types I-VI, an approximate but
common correspondence::

    type  ITA range (deg)   reference L*  a*   b*   (ITA of the reference)
    I     > 55              70            8    12   (59)
    II    41 .. 55          65            9    14   (47)
    III   28 .. 41          60           10    16   (32)
    IV    10 .. 28          55           11    18   (15)
    V    -30 .. 10          45           12    20   (-14)
    VI    < -30             35           12    18   (-40)
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: Fitzpatrick type -> (lowest ITA, highest ITA) in degrees (Chardon et al. 1991 categories;
#: the open ends are closed at 70 and -60 to draw from).
ITA_RANGES = {1: (55.0, 70.0), 2: (41.0, 55.0), 3: (28.0, 41.0), 4: (10.0, 28.0),
              5: (-30.0, 10.0), 6: (-60.0, -30.0)}
#: Fitzpatrick type -> reference skin colour (L*, a*, b*) in CIELAB.
SKIN_LAB = {1: (70.0, 8.0, 12.0), 2: (65.0, 9.0, 14.0), 3: (60.0, 10.0, 16.0),
            4: (55.0, 11.0, 18.0), 5: (45.0, 12.0, 20.0), 6: (35.0, 12.0, 18.0)}


# --------------------------------------------------------------------------- helpers


def _uniform(rng, bounds) -> float:
    """Draw from [low, high] (a fixed value when both are equal)."""
    low, high = float(bounds[0]), float(bounds[1])
    return low if high <= low else float(rng.uniform(low, high))


def _check_image(image) -> np.ndarray:
    """Validate a uint8 (H, W, 3) image."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    return image


def _to_lab(image: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 CIELAB (L* in 0..100)."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def _from_lab(lab: np.ndarray) -> np.ndarray:
    """float32 CIELAB -> uint8 RGB."""
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def _draw_colour(rng, hue_shift, saturation_range, brightness, contrast_range) -> dict:
    """Draw the colour parameters shared by lesion and photometric augmentation."""
    return {"hue_shift": _uniform(rng, (-hue_shift, hue_shift)),
            "saturation": _uniform(rng, saturation_range),
            "brightness": _uniform(rng, (-brightness, brightness)),
            "contrast": _uniform(rng, contrast_range)}


def _apply_colour(image: np.ndarray, params: dict, region=None) -> np.ndarray:
    """Hue rotation (deg), saturation gain, contrast about the mean and brightness offset."""
    out = image.astype(np.float32)
    if params["hue_shift"] != 0.0 or params["saturation"] != 1.0:
        hsv = cv2.cvtColor(out / 255.0, cv2.COLOR_RGB2HSV)  # H in degrees
        hsv[..., 0] = np.mod(hsv[..., 0] + params["hue_shift"], 360.0)
        hsv[..., 1] = np.clip(hsv[..., 1] * params["saturation"], 0.0, 1.0)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
    pixels = out if region is None or not region.any() else out[region]
    mean = pixels.reshape(-1, 3).mean(axis=0)
    out = (out - mean) * params["contrast"] + mean + params["brightness"]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _elastic_field(rng, shape, strength_px: float, smoothness_px: float):
    """Smooth random displacement (dx, dy) float32 (H, W) each, max about `strength_px`."""
    height, width = shape
    if strength_px <= 0:
        zero = np.zeros(shape, np.float32)
        return zero, zero
    fields = []
    for _ in range(2):
        noise = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
        smooth = cv2.GaussianBlur(noise, (0, 0), max(smoothness_px, 0.5),
                                  borderType=cv2.BORDER_REFLECT_101)
        peak = float(np.abs(smooth).max()) or 1.0
        fields.append(smooth / peak * strength_px)
    return fields[0], fields[1]


def _flip(arrays, horizontal: bool, vertical: bool):
    """Flip every array of the list the same way."""
    out = []
    for array in arrays:
        if horizontal:
            array = array[:, ::-1]
        if vertical:
            array = array[::-1]
        out.append(np.ascontiguousarray(array))
    return out


def _remap(array: np.ndarray, map_x, map_y, interpolation, fill) -> np.ndarray:
    """cv2.remap for any dtype OpenCV handles, with a constant fill."""
    dtype = array.dtype
    work = array.astype(np.uint8) if dtype == np.bool_ else array
    if work.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        work = work.astype(np.float32)
    channels = work.shape[2] if work.ndim == 3 else 1
    border = (fill,) * channels if np.isscalar(fill) else tuple(fill)
    out = cv2.remap(work, map_x, map_y, interpolation, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=border)
    if out.ndim < array.ndim:
        out = out[..., None]
    return out.astype(dtype)


# --------------------------------------------------------------------------- lesions


def augment_lesion(image: np.ndarray, mask: np.ndarray, *, rng: np.random.Generator,
                   flip_probability: float = 0.5, max_rotation: float = 180.0,
                   scale_range=(0.8, 1.25), elastic_strength: float = 0.04,
                   elastic_smoothness: float = 0.15, hue_shift: float = 8.0,
                   saturation_range=(0.8, 1.2), brightness: float = 15.0,
                   contrast_range=(0.8, 1.2)):
    """Augment one lesion crop: flips, rotation, scale, elastic deformation and colour.

    The canvas grows so nothing of the rotated, scaled crop is cut; new pixels are black
    (the PAD-UFES-20 convention for "not lesion").  Colour changes are applied before the
    warp and are measured over the lesion, so the black fill stays black.

    Parameters
    ----------
    image : ndarray
        uint8 (h, w, 3) RGB crop.
    mask : ndarray
        bool or uint8 (h, w) lesion mask.
    rng : numpy.random.Generator
    flip_probability : float
        Probability of each of the horizontal and vertical flips.
    max_rotation : float
        Rotation angle drawn from [-max_rotation, max_rotation] degrees.
    scale_range : (float, float)
        Isotropic scale factor range.
    elastic_strength, elastic_smoothness : float
        Elastic displacement amplitude and Gaussian smoothing of the random field, both as
        fractions of the crop's longest side.
    hue_shift : float
        Hue rotation drawn from [-hue_shift, hue_shift] degrees.
    saturation_range, contrast_range : (float, float)
        Multiplicative gains.
    brightness : float
        Offset drawn from [-brightness, brightness] (8-bit levels).

    Returns
    -------
    image : ndarray
        uint8 (H', W', 3).
    mask : ndarray
        Same dtype as the input mask, (H', W'), values unchanged by interpolation (nearest).
    params : dict
        Everything drawn: flips, angle, scale, elastic amplitude (px), colour.
    """
    image = _check_image(image)
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape[:2]}")
    flip_h = bool(rng.random() < flip_probability)
    flip_v = bool(rng.random() < flip_probability)
    angle = _uniform(rng, (-max_rotation, max_rotation))
    scale = _uniform(rng, scale_range)
    colour = _draw_colour(rng, hue_shift, saturation_range, brightness, contrast_range)
    image = _apply_colour(image, colour, region=mask.astype(bool))
    image, mask = _flip([image, mask], flip_h, flip_v)

    height, width = mask.shape
    # Forward affine about the centre, then translate into an expanded canvas.
    forward = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), angle, scale)
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1],
                        [width - 1, height - 1, 1]], np.float64)
    moved = corners @ forward.T
    low = np.floor(moved.min(axis=0))
    high = np.ceil(moved.max(axis=0))
    forward[:, 2] -= low
    out_w, out_h = int(high[0] - low[0]) + 1, int(high[1] - low[1]) + 1
    inverse = cv2.invertAffineTransform(forward)

    size = max(out_h, out_w)
    strength = elastic_strength * size
    dx, dy = _elastic_field(rng, (out_h, out_w), strength, elastic_smoothness * size)
    grid_y, grid_x = np.mgrid[:out_h, :out_w].astype(np.float32)
    # Elastic field in output coordinates, then the inverse affine to source coordinates.
    warped_x, warped_y = grid_x + dx, grid_y + dy
    map_x = (inverse[0, 0] * warped_x + inverse[0, 1] * warped_y + inverse[0, 2]).astype(np.float32)
    map_y = (inverse[1, 0] * warped_x + inverse[1, 1] * warped_y + inverse[1, 2]).astype(np.float32)
    image = _remap(image, map_x, map_y, cv2.INTER_LINEAR, 0)
    mask = _remap(mask, map_x, map_y, cv2.INTER_NEAREST, 0)
    params = {"flip_horizontal": flip_h, "flip_vertical": flip_v, "angle": angle,
              "scale": scale, "elastic_px": float(strength), "size": [out_w, out_h], **colour}
    return image, mask, params


# --------------------------------------------------------------------------- bodies


def augment_body(image: np.ndarray, masks, *, rng: np.random.Generator,
                 horizontal_flip_probability: float = 0.5,
                 vertical_flip_probability: float = 0.2, max_rotation: float = 10.0,
                 scale_range=(0.9, 1.1), image_fill=(0, 0, 0), mask_fill=0):
    """Flip, rotate a little and scale a body crop, warping its masks consistently.

    The output keeps the input size; the image is interpolated bilinearly, every mask by
    nearest neighbour (values, e.g. label ids or 255 = ignore, are never mixed).

    Parameters
    ----------
    image : ndarray
        uint8 (H, W, 3).
    masks : ndarray, sequence of ndarray, dict of ndarray or None
        Each (H, W) of any dtype (bool skin mask, uint8 labels, uint16 instances).
    rng : numpy.random.Generator
    horizontal_flip_probability, vertical_flip_probability : float
    max_rotation : float
        Degrees, drawn from [-max_rotation, max_rotation].
    scale_range : (float, float)
    image_fill : tuple
        RGB of pixels brought in from outside the crop.
    mask_fill : int or dict
        Value of masks outside the crop (e.g. 0 for a skin mask, 255 = ignore for labels);
        a dict gives one per key when ``masks`` is a dict.

    Returns
    -------
    image : ndarray
        uint8 (H, W, 3).
    masks : same container type as given
        Warped masks, dtypes kept.
    params : dict
        flips, angle, scale.
    """
    image = _check_image(image)
    if masks is None:
        keys, items = None, []
    elif isinstance(masks, dict):
        keys, items = list(masks), [np.asarray(m) for m in masks.values()]
    elif isinstance(masks, np.ndarray):
        keys, items = "single", [masks]
    else:
        keys, items = "list", [np.asarray(m) for m in masks]
    for item in items:
        if item.shape[:2] != image.shape[:2]:
            raise ValueError(f"mask shape {item.shape} differs from image shape {image.shape[:2]}")
    flip_h = bool(rng.random() < horizontal_flip_probability)
    flip_v = bool(rng.random() < vertical_flip_probability)
    angle = _uniform(rng, (-max_rotation, max_rotation))
    scale = _uniform(rng, scale_range)
    image, *items = _flip([image, *items], flip_h, flip_v)
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), angle, scale)
    image = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(image_fill))
    inverse = cv2.invertAffineTransform(matrix)
    grid_y, grid_x = np.mgrid[:height, :width].astype(np.float32)
    map_x = (inverse[0, 0] * grid_x + inverse[0, 1] * grid_y + inverse[0, 2]).astype(np.float32)
    map_y = (inverse[1, 0] * grid_x + inverse[1, 1] * grid_y + inverse[1, 2]).astype(np.float32)
    warped = []
    for index, item in enumerate(items):
        fill = mask_fill[keys[index]] if isinstance(mask_fill, dict) else mask_fill
        warped.append(_remap(item, map_x, map_y, cv2.INTER_NEAREST, fill))
    params = {"flip_horizontal": flip_h, "flip_vertical": flip_v, "angle": angle, "scale": scale}
    if keys is None:
        out = None
    elif keys == "single":
        out = warped[0]
    elif keys == "list":
        out = warped
    else:
        out = dict(zip(keys, warped))
    return image, out, params


# --------------------------------------------------------------------------- skin tone


def individual_typology_angle(image: np.ndarray, mask=None) -> float:
    """Individual typology angle of the skin, ITA = arctan((L* - 50) / b*) * 180 / pi.

    Parameters
    ----------
    image : ndarray
        uint8 (H, W, 3) RGB.
    mask : ndarray, optional
        bool (H, W) skin pixels; the whole image when None.

    Returns
    -------
    float
        Degrees, from the mean L* and b* of the skin (Chardon et al. 1991).
    """
    lab = _to_lab(_check_image(image))
    pixels = lab.reshape(-1, 3) if mask is None else lab[np.asarray(mask, bool)]
    if pixels.size == 0:
        raise ValueError("empty skin mask")
    lightness, _, yellow = pixels.mean(axis=0)
    # arctan2 equals arctan((L - 50) / b) for b > 0 (all skin) and stays defined at b = 0.
    return float(np.degrees(np.arctan2(lightness - 50.0, yellow)))


def fitzpatrick_from_ita(ita: float) -> int:
    """Fitzpatrick type (1..6) of an ITA in degrees, by the ranges of :data:`ITA_RANGES`."""
    for skin_type in range(1, 6):
        if ita > ITA_RANGES[skin_type][0]:
            return skin_type
    return 6


def _parse_type(value) -> int:
    """Accept 1..6 or 'I'..'VI'."""
    romans = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6}
    if isinstance(value, str):
        value = romans.get(value.strip().upper(), value)
    value = int(value)
    if value not in ITA_RANGES:
        raise ValueError(f"Fitzpatrick type must be 1..6, got {value}")
    return value


def shift_skin_tone(image: np.ndarray, skin_mask: np.ndarray, *, rng: np.random.Generator = None,
                    target_fitzpatrick=None, type_probabilities=None, strength: float = 1.0,
                    feather_px: float = 3.0):
    """Move the skin of an image towards a Fitzpatrick type I-VI in CIELAB.

    A target ITA is drawn inside the target type's range (:data:`ITA_RANGES`) with b* near
    the type's reference (:data:`SKIN_LAB`) and L* = 50 + b* tan(ITA).  The skin's L* is then
    scaled (pigment darkens multiplicatively, so moles keep their relative contrast) and its
    a*, b* offset so the mean skin colour reaches the target; ``strength`` < 1 moves part way.
    The change is faded in over ``feather_px`` at the skin mask's edge.

    Parameters
    ----------
    image : ndarray
        uint8 (H, W, 3) RGB.
    skin_mask : ndarray
        bool (H, W).
    rng : numpy.random.Generator, optional
        Needed unless ``target_fitzpatrick`` is given (it also jitters the target).
    target_fitzpatrick : int or str, optional
        1..6 or 'I'..'VI'; drawn from ``type_probabilities`` (uniform by default) when None.
    type_probabilities : sequence of 6 floats, optional
    strength : float
        Fraction of the colour change applied (0..1).
    feather_px : float
        Gaussian sigma of the soft skin-mask edge.

    Returns
    -------
    image : ndarray
        uint8 (H, W, 3).
    params : dict
        from_ita, from_type (estimate), to_type, target_ita, target_lab, gain_l, offset_a,
        offset_b.
    """
    image = _check_image(image)
    skin = np.asarray(skin_mask, bool)
    if skin.shape != image.shape[:2]:
        raise ValueError("skin_mask and image differ in size")
    if not skin.any():
        raise ValueError("empty skin mask")
    if target_fitzpatrick is None:
        if rng is None:
            raise ValueError("give rng or target_fitzpatrick")
        probabilities = None if type_probabilities is None else np.asarray(type_probabilities, float)
        if probabilities is not None:
            probabilities = probabilities / probabilities.sum()
        to_type = int(rng.choice(np.arange(1, 7), p=probabilities))
    else:
        to_type = _parse_type(target_fitzpatrick)
    reference_l, reference_a, reference_b = SKIN_LAB[to_type]
    if rng is None:
        target_ita = float(np.degrees(np.arctan2(reference_l - 50.0, reference_b)))
        target_b, target_a = reference_b, reference_a
    else:
        low, high = ITA_RANGES[to_type]
        # Stay clear of the range ends so the estimate of the result lands in the type.
        margin = 0.15 * (high - low)
        target_ita = _uniform(rng, (low + margin, high - margin))
        target_b = reference_b * _uniform(rng, (0.9, 1.1))
        target_a = reference_a * _uniform(rng, (0.9, 1.1))
    target_l = 50.0 + target_b * np.tan(np.radians(target_ita))

    lab = _to_lab(image)
    mean_l, mean_a, mean_b = lab[skin].mean(axis=0)
    from_ita = float(np.degrees(np.arctan2(mean_l - 50.0, mean_b)))
    gain_l = 1.0 + strength * (target_l / max(mean_l, 1.0) - 1.0)
    offset_a = strength * (target_a - mean_a)
    offset_b = strength * (target_b - mean_b)
    shifted = lab.copy()
    shifted[..., 0] = np.clip(lab[..., 0] * gain_l, 0.0, 100.0)
    shifted[..., 1] += offset_a
    shifted[..., 2] += offset_b
    weight = skin.astype(np.float32)
    if feather_px > 0:
        weight = cv2.GaussianBlur(weight, (0, 0), feather_px) * skin
    out = lab + weight[..., None] * (shifted - lab)
    result = _from_lab(out)
    params = {"from_ita": from_ita, "from_type": fitzpatrick_from_ita(from_ita),
              "to_type": to_type, "target_ita": float(target_ita),
              "target_lab": [float(target_l), float(target_a), float(target_b)],
              "gain_l": float(gain_l), "offset_a": float(offset_a), "offset_b": float(offset_b),
              "strength": float(strength)}
    return result, params


# --------------------------------------------------------------------------- camera


def photometric(image: np.ndarray, *, rng: np.random.Generator, hue_shift: float = 4.0,
                saturation_range=(0.85, 1.15), brightness: float = 12.0,
                contrast_range=(0.85, 1.15), gamma_range=(0.8, 1.25),
                blur_probability: float = 0.3, blur_sigma_range=(0.3, 1.2),
                noise_sigma_range=(0.0, 4.0), jpeg_probability: float = 0.5,
                jpeg_quality_range=(50, 95)):
    """Whole-image photometric noise of a real camera.

    Colour (hue, saturation), brightness, contrast, gamma, optional Gaussian blur, Gaussian
    sensor noise and optional JPEG re-encoding, in that order.

    Parameters
    ----------
    image : ndarray
        uint8 (H, W, 3) RGB.
    rng : numpy.random.Generator
    hue_shift, brightness : float
        Symmetric ranges (degrees, 8-bit levels).
    saturation_range, contrast_range, gamma_range : (float, float)
    blur_probability : float
    blur_sigma_range : (float, float)
        Gaussian blur sigma in pixels.
    noise_sigma_range : (float, float)
        Standard deviation of additive Gaussian noise (8-bit levels).
    jpeg_probability : float
    jpeg_quality_range : (int, int)

    Returns
    -------
    image : ndarray
        uint8 (H, W, 3).
    params : dict
    """
    image = _check_image(image)
    colour = _draw_colour(rng, hue_shift, saturation_range, brightness, contrast_range)
    gamma = _uniform(rng, gamma_range)
    blur = bool(rng.random() < blur_probability)
    blur_sigma = _uniform(rng, blur_sigma_range) if blur else 0.0
    noise_sigma = _uniform(rng, noise_sigma_range)
    jpeg = bool(rng.random() < jpeg_probability)
    quality = int(rng.integers(jpeg_quality_range[0], jpeg_quality_range[1] + 1)) if jpeg else None
    noise_seed = int(rng.integers(2 ** 31))

    out = _apply_colour(image, colour)
    if gamma != 1.0:
        table = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255).astype(np.uint8)
        out = cv2.LUT(out, table)
    if blur_sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), blur_sigma)
    if noise_sigma > 0:
        noise = np.random.default_rng(noise_seed).normal(0.0, noise_sigma, out.shape)
        out = np.clip(np.rint(out + noise), 0, 255).astype(np.uint8)
    if jpeg:
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    params = {**colour, "gamma": gamma, "blur_sigma": blur_sigma, "noise_sigma": noise_sigma,
              "jpeg_quality": quality}
    return np.ascontiguousarray(out), params


# --------------------------------------------------------------------------- hair


def _bezier(points: np.ndarray, num: int) -> np.ndarray:
    """(num, 2) points on the cubic Bezier curve of the 4 control points (4, 2)."""
    t = np.linspace(0.0, 1.0, num)[:, None]
    p0, p1, p2, p3 = points
    return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3


def hair_layer(shape, *, rng: np.random.Generator, count_range=(10, 120), width_range=(0.5, 1.8),
               opacity_range=(0.2, 0.65), length_range=(0.05, 0.3), curvature: float = 0.3,
               spread: float = 0.5, supersample: int = 4):
    """Draw thin dark curved hair strands: an alpha map and a colour to composite.

    Each strand is a cubic Bezier curve (control points spread along a direction drawn about
    the layer's main hair direction, with standard deviation ``spread`` radians, bent sideways by up to ``curvature`` of its length), drawn anti-aliased at
    ``supersample`` times the resolution and reduced by area averaging, so widths of 0.5-2 px
    come out with soft, sub-pixel edges.  One hair colour per layer (one person's hair):
    dark brown to black.

    Parameters
    ----------
    shape : (int, int)
        (H, W) of the image.
    rng : numpy.random.Generator
    count_range : (int, int)
        Number of strands.
    width_range : (float, float)
        Strand width in pixels.
    opacity_range : (float, float)
        Per-strand opacity.
    length_range : (float, float)
        Strand length as a fraction of the image's shorter side.
    curvature : float
        Largest sideways offset of the inner control points, relative to the length.
    supersample : int
        Drawing resolution factor.

    Returns
    -------
    alpha : ndarray
        float32 (H, W) in [0, 1].
    colour : ndarray
        float32 (3,) RGB of the hair.
    params : dict
        count, colour, widths and opacities drawn.
    """
    height, width = shape[:2]
    scale = int(supersample)
    canvas = np.zeros((height * scale, width * scale), np.uint8)
    count = int(rng.integers(count_range[0], count_range[1] + 1))
    # Dark brown to black: a brown hue darkened by a random factor.
    darkness = _uniform(rng, (0.25, 1.0))
    colour = np.array([70.0, 48.0, 32.0], np.float32) * darkness
    widths, opacities = [], []
    side = min(height, width)
    # Hair on one patch of skin grows roughly one way: strands scatter about one direction.
    main_angle = float(rng.uniform(0, np.pi))
    for _ in range(count):
        start = rng.uniform((0, 0), (width, height))
        angle = main_angle + float(rng.normal(0.0, spread)) + np.pi * float(rng.integers(2))
        length = _uniform(rng, length_range) * side
        direction = np.array([np.cos(angle), np.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        bends = rng.uniform(-curvature, curvature, 2) * length
        controls = np.stack([start, start + direction * length / 3 + normal * bends[0],
                             start + direction * 2 * length / 3 + normal * bends[1],
                             start + direction * length])
        curve = _bezier(controls, max(8, int(length / 2)))
        strand_width = _uniform(rng, width_range)
        opacity = _uniform(rng, opacity_range)
        widths.append(round(strand_width, 2))
        opacities.append(round(opacity, 3))
        points = np.rint(curve * scale).astype(np.int32).reshape(-1, 1, 2)
        # Later strands cover earlier ones where they cross (uint8 opacity).
        cv2.polylines(canvas, [points], False, int(round(255 * opacity)),
                      thickness=max(1, int(round(strand_width * scale))), lineType=cv2.LINE_AA)
    alpha = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    params = {"count": count, "colour": [round(float(c), 1) for c in colour],
              "direction_deg": round(float(np.degrees(main_angle)), 1),
              "widths": widths, "opacities": opacities}
    return alpha, colour, params


def apply_hair(image: np.ndarray, alpha: np.ndarray, colour) -> np.ndarray:
    """Composite a hair layer over an image: uint8 (H, W, 3), ``image`` where alpha is 0."""
    image = _check_image(image)
    a = np.asarray(alpha, np.float32)[..., None]
    out = image.astype(np.float32) * (1.0 - a) + np.asarray(colour, np.float32) * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def hairiness(image: np.ndarray, mask=None, *, kernel_px: int = 7, threshold: float = 10.0) -> float:
    """Fraction of (skin) pixels on thin dark lines: a hairiness score of a photo.

    The black top-hat (closing minus image) of the grey image with a ``kernel_px`` disc
    responds to dark structures narrower than the disc: hair, and also pores and the smallest
    freckles.  The score is the fraction of pixels of ``mask`` whose top-hat exceeds
    ``threshold`` grey levels.

    Parameters
    ----------
    image : ndarray
        uint8 (H, W, 3) RGB.
    mask : ndarray, optional
        bool (H, W): the pixels scored (skin); all when None.
    kernel_px : int
        Diameter of the disc; strands up to about ``kernel_px - 2`` px wide respond.
    threshold : float
        Top-hat level (0-255) counted as a dark line.

    Returns
    -------
    float
        In [0, 1].
    """
    image = _check_image(image)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_px, kernel_px))
    tophat = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel)
    lines = tophat > threshold
    if mask is None:
        return float(lines.mean())
    mask = np.asarray(mask, bool)
    return float(lines[mask].mean()) if mask.any() else 0.0
