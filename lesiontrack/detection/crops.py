"""Lesion crops with fixed context for the second-stage malignancy classifier.

A lesion is seen through a square of ``context`` x its size (the longest side of its box)
around the box centre, cut from the photo at the photo's own resolution and resized to a
fixed side: a 10 px mole and a 40 px carcinoma fill the same share of their crops, with the
same amount of surrounding skin. Squares reaching past the photo border are filled by
reflection (``cv2.BORDER_REFLECT_101``), as the detector pads its input.

Training crops come from two kinds of source, each restricted to the patients of one split
(``splits.json`` of a synthesized dataset):

* the blended lesions of a synthesized dataset's split (boxes and labels from its manifest);
* the lesion libraries' own photos at body-photo scale (PAD-UFES-20, ISIC 2017: the lesion's
  pixels composited onto skin patches of the split's body photos).

Both are stored once as *source crops* with a wider context (:data:`SOURCE_CONTEXT`), from
which :func:`augment_crop` draws a rotated, flipped, scaled, shifted and photometrically
jittered view at the classifier's context. numpy / OpenCV only (no TensorFlow).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from synth.augment import photometric
from synth.io import present_lesions, read_image, read_manifest

log = logging.getLogger(__name__)

CONTEXT = 2.0
#: Context of the stored source crops: room for any rotation and a 15 % zoom-out of the
#: classifier's square (2 * sqrt(2) * 1.15 / 2 = 1.63 half-sides of the lesion).
SOURCE_CONTEXT = 3.5
SOURCE_SIZE = 96
MIN_SIDE = 4
#: Label values of lesions with a known diagnosis (synth.io: 1 benign, 2 malignant).
KNOWN_LABELS = (1, 2)


def context_square(bbox, *, context=CONTEXT, min_side=MIN_SIDE):
    """The square around a lesion box: ``(x0, y0, side)`` in integer pixels.

    Parameters
    ----------
    bbox : sequence of float
        ``[x, y, w, h]`` in pixels (COCO).
    context : float
        Side of the square over the longest side of the box.
    min_side : int
        Smallest side in pixels.

    Returns
    -------
    tuple of int
        Top-left corner (may be negative or past the photo) and side.
    """
    x, y, w, h = (float(v) for v in bbox)
    side = max(int(round(context * max(w, h))), int(min_side))
    # Half-pixel positions round up (not to even), the same way on both axes.
    x0 = int(np.floor(x + w / 2.0 - side / 2.0 + 0.5))
    y0 = int(np.floor(y + h / 2.0 - side / 2.0 + 0.5))
    return x0, y0, side


def crop_context(image, bbox, *, size=32, context=CONTEXT, min_side=MIN_SIDE):
    """A lesion's context square resized to ``size`` x ``size``.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    bbox : sequence of float
        ``[x, y, w, h]`` in pixels.
    size : int
        Output side in pixels.
    context, min_side
        See :func:`context_square`.

    Returns
    -------
    ndarray
        uint8 (size, size, 3); pixels past the photo border are reflected
        (``cv2.BORDER_REFLECT_101``).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    height, width = image.shape[:2]
    x0, y0, side = context_square(bbox, context=context, min_side=min_side)
    x1, y1 = x0 + side, y0 + side
    inner = image[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)]
    if inner.size == 0:
        raise ValueError(f"box {list(bbox)} lies outside the {width}x{height} image")
    pads = (max(-y0, 0), max(y1 - height, 0), max(-x0, 0), max(x1 - width, 0))
    if any(pads):
        # Reflection needs the pad smaller than the side it reflects; repeat if not.
        mode = (cv2.BORDER_REFLECT_101 if max(pads[:2]) < inner.shape[0]
                and max(pads[2:]) < inner.shape[1] else cv2.BORDER_REPLICATE)
        inner = cv2.copyMakeBorder(np.ascontiguousarray(inner), *pads, mode)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(inner), (size, size), interpolation=interpolation)


def crop_lesions(image, boxes, *, size=32, context=CONTEXT):
    """:func:`crop_context` for every box: uint8 (N, size, size, 3)."""
    crops = [crop_context(image, box, size=size, context=context) for box in boxes]
    return np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)


# --------------------------------------------------------------------------- training crops


@dataclass
class CropSet:
    """Source crops of lesions and what is known about them.

    Attributes
    ----------
    images : ndarray
        uint8 (N, S, S, 3), context :data:`SOURCE_CONTEXT` x the lesion's size.
    malignant : ndarray
        bool (N,).
    size_px : ndarray
        float32 (N,), the lesion's longest side in the photo (pixels).
    diagnosis, patient, origin, photo : list of str
        Per crop; ``origin`` is ``"blend"`` or ``"library"``; ``photo`` groups the lesions of
        one synthesized photo (for atypicality), empty for library crops.
    """

    images: np.ndarray
    malignant: np.ndarray
    size_px: np.ndarray
    diagnosis: list = field(default_factory=list)
    patient: list = field(default_factory=list)
    origin: list = field(default_factory=list)
    photo: list = field(default_factory=list)

    def __len__(self):
        return len(self.malignant)

    @staticmethod
    def concatenate(sets):
        """One CropSet holding every crop of ``sets`` in order."""
        sets = [s for s in sets if len(s)]
        if not sets:
            return CropSet(np.zeros((0, SOURCE_SIZE, SOURCE_SIZE, 3), np.uint8),
                           np.zeros(0, bool), np.zeros(0, np.float32))
        return CropSet(np.concatenate([s.images for s in sets]),
                       np.concatenate([s.malignant for s in sets]),
                       np.concatenate([s.size_px for s in sets]),
                       *[sum((getattr(s, name) for s in sets), [])
                         for name in ("diagnosis", "patient", "origin", "photo")])


def _crop_set(rows, source_size):
    """A CropSet from (image, malignant, size_px, diagnosis, patient, origin, photo) rows."""
    if not rows:
        return CropSet.concatenate([])
    columns = list(zip(*rows))
    return CropSet(np.stack(columns[0]).astype(np.uint8), np.asarray(columns[1], bool),
                   np.asarray(columns[2], np.float32), *[list(c) for c in columns[3:]])


def known_lesions(record):
    """The present lesions of a manifest record with a known diagnosis (labels 1 and 2)."""
    return [lesion for lesion in present_lesions(record)
            if lesion.get("label") in KNOWN_LABELS and lesion.get("malignant") is not None]


def dataset_crops(root, split, *, source_size=SOURCE_SIZE, limit=None):
    """Source crops of the blended lesions of one split of a synthesized dataset.

    Lesions labelled 3 (diagnosis unknown) or 255 (ignore) are left out.

    Parameters
    ----------
    root : path-like
        Dataset root.
    split : str
        ``"train"``, ``"val"`` or ``"test"``.
    source_size : int
    limit : int, optional
        Read only the first ``limit`` samples of the split.

    Returns
    -------
    CropSet
    """
    from pathlib import Path

    root = Path(root)
    rows = []
    records = [r for r in read_manifest(root) if r.get("split") == split]
    for record in records[:limit]:
        lesions = known_lesions(record)
        if not lesions:
            continue
        image = read_image(root / record["image"])
        for lesion in lesions:
            crop = crop_context(image, lesion["bbox"], size=source_size, context=SOURCE_CONTEXT)
            rows.append((crop, bool(lesion["malignant"]), float(max(lesion["bbox"][2:])),
                         str(lesion.get("diagnosis")), str(lesion.get("patient")), "blend",
                         str(record["id"])))
    return _crop_set(rows, source_size)


def _skin_patch(bodies, side, rng):
    """A ``side`` x ``side`` patch of skin from one of the body photos (image, skin mask)."""
    for _ in range(50):
        image, skin = bodies[int(rng.integers(len(bodies)))]
        height, width = skin.shape
        if height <= side or width <= side:
            continue
        y, x = int(rng.integers(height - side)), int(rng.integers(width - side))
        if skin[y:y + side, x:x + side].mean() > 0.95:
            return image[y:y + side, x:x + side]
    raise ValueError("no skin patch of the body photos is large enough")


def library_crop(image, mask, diameter_px, *, rng, bodies, source_size=SOURCE_SIZE):
    """One library lesion as it would look on a body photo, as a source crop.

    The lesion's pixels (its mask) are resized so that their longest side is ``diameter_px``
    and laid on a random skin patch of ``bodies`` with a feathered (0.7 px) edge. Alpha
    compositing keeps the library's own colours (no Poisson colour transfer), and leaves out
    what lies outside the mask (black in the PAD-UFES-20 crops, dermoscope rims and rulers in
    ISIC photos).

    Parameters
    ----------
    image : ndarray
        uint8 (H, W, 3), the library photo.
    mask : ndarray
        bool (H, W), the lesion.
    diameter_px : float
        Longest side the lesion gets (its physical size at body-photo scale).
    rng : numpy.random.Generator
    bodies : list of (ndarray, ndarray)
        uint8 (H, W, 3) body photos and bool (H, W) masks of their plain skin.
    source_size : int

    Returns
    -------
    ndarray
        uint8 (source_size, source_size, 3).
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("empty lesion mask")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    factor = float(diameter_px) / max(x1 - x0, y1 - y0)
    size = (max(2, int(round((x1 - x0) * factor))), max(2, int(round((y1 - y0) * factor))))
    lesion = cv2.resize(image[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA).astype(np.float32)
    alpha = cv2.resize(mask[y0:y1, x0:x1].astype(np.float32), size, interpolation=cv2.INTER_AREA)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.7)[..., None]
    side = max(int(round(SOURCE_CONTEXT * max(size))), MIN_SIDE)
    patch = _skin_patch(bodies, side, rng).astype(np.float32)
    top, left = (side - size[1]) // 2, (side - size[0]) // 2
    window = patch[top:top + size[1], left:left + size[0]]
    window[:] = alpha * lesion + (1 - alpha) * window
    out = np.clip(patch + 0.5, 0, 255).astype(np.uint8)
    interpolation = cv2.INTER_AREA if side > source_size else cv2.INTER_LINEAR
    return cv2.resize(out, (source_size, source_size), interpolation=interpolation)


def _draw_diameter_mm(diameter_mm, rng):
    """The recorded diameter with +-15 % jitter, else log-normal around 5 mm (as synth)."""
    if diameter_mm:
        return float(diameter_mm) * float(rng.uniform(0.85, 1.15))
    return float(np.clip(np.exp(rng.normal(np.log(5.0), 0.45)), 2.0, 25.0))


def library_crops(folder, patients, *, rng, bodies, mm_per_px=0.4, copies=1,
                  source_size=SOURCE_SIZE):
    """Source crops of a lesion library's photos at body-photo scale.

    Parameters
    ----------
    folder : path-like
        A lesion library (PAD-UFES-20, ISIC 2017 or generic layout).
    patients : set of str
        Only lesions of these patients are used (a dataset split's patients).
    rng : numpy.random.Generator
    bodies : list of (ndarray, ndarray)
        Body photos and masks of their plain skin (:func:`library_crop`).
    mm_per_px : float
        Body-photo scale; a lesion of D mm becomes D / mm_per_px pixels.
    copies : int
        Crops per lesion, each at a freshly drawn size and skin patch.
    source_size : int

    Returns
    -------
    CropSet
    """
    from synth.lesions import load_lesion, read_lesion_library

    library = read_lesion_library(folder)
    rows = []
    for record in library.records:
        patient = record.patient or record.id
        if patient not in patients:
            continue
        try:
            image, mask, _ = load_lesion(record)
        except Exception as error:  # noqa: BLE001 - a bad file is skipped, as synth does
            log.warning("%s: skipped (%s)", record.image_path, error)
            continue
        for _ in range(copies):
            diameter_px = float(np.clip(_draw_diameter_mm(record.diameter_mm, rng) / mm_per_px,
                                        6.0, 100.0))
            crop = library_crop(image, mask.astype(bool), diameter_px, rng=rng, bodies=bodies,
                                source_size=source_size)
            rows.append((crop, bool(record.malignant), diameter_px, str(record.diagnosis),
                         str(patient), "library", ""))
    return _crop_set(rows, source_size)


# --------------------------------------------------------------------------- augmentation


def view_crop(source, *, size, context=CONTEXT, source_context=SOURCE_CONTEXT):
    """The classifier's centred view of a source crop: uint8 (size, size, 3)."""
    side = source.shape[0] * context / source_context
    x0 = (source.shape[0] - side) / 2.0
    return crop_context(source, [x0, x0, side, side], size=size, context=1.0)


def augment_crop(source, *, rng, size, context=CONTEXT, source_context=SOURCE_CONTEXT,
                 scale_range=(0.87, 1.15), shift=0.1, photometric_options=None):
    """A randomly transformed view of a source crop, as :func:`view_crop` would give.

    Rotation by any angle, flips, zoom in ``scale_range``, a shift of up to ``shift`` x the
    lesion's size, then :func:`synth.augment.photometric` at the output resolution (colour,
    exposure, gamma, blur, sensor noise, JPEG): what changes between cameras and visits.

    Parameters
    ----------
    source : ndarray
        uint8 (S, S, 3) source crop.
    rng : numpy.random.Generator
    size : int
    context, source_context : float
    scale_range : (float, float)
    shift : float
    photometric_options : dict, optional
        Keyword arguments of :func:`synth.augment.photometric`.

    Returns
    -------
    ndarray
        uint8 (size, size, 3).
    """
    source_side = source.shape[0]
    lesion_px = source_side / source_context
    centre = source_side / 2.0
    angle = float(rng.uniform(0, 360))
    zoom = float(rng.uniform(*scale_range))
    dx, dy = rng.uniform(-shift, shift, 2) * lesion_px
    matrix = cv2.getRotationMatrix2D((centre, centre), angle, zoom)
    matrix[:, 2] += (dx, dy)
    warped = cv2.warpAffine(source, matrix, (source_side, source_side), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT_101)
    if rng.random() < 0.5:
        warped = warped[:, ::-1]
    view = view_crop(np.ascontiguousarray(warped), size=size, context=context,
                     source_context=source_context)
    options = {"hue_shift": 5.0, "brightness": 15.0, "saturation_range": (0.8, 1.2),
               "contrast_range": (0.8, 1.2), "blur_probability": 0.3,
               "blur_sigma_range": (0.3, 1.0), "jpeg_probability": 0.5,
               "jpeg_quality_range": (60, 95), **(photometric_options or {})}
    view, _ = photometric(view, rng=rng, **options)
    return view
