"""Lesion library: real lesion photos with masks and labels, read from known layouts.

Li et al. (2016) blend real lesion photos onto body photos; each lesion needs its image, a
lesion mask and a benign / malignant label. :func:`read_lesion_library` detects the layout of
a folder from its CSV file:

``pad-ufes-20`` (``metadata.csv``)
    Columns ``img_id, diagnostic`` (required) and optionally ``patient_id, fitspatrick,
    diameter_1, diameter_2``. Images ``images/<img_id>.jpg`` (or ``.png``, or ``<img_id>``
    itself when it carries a suffix), masks ``masks/<img_id>.png`` (optional). Malignant =
    diagnostic in {BCC, SCC, MEL}; the diameter is the larger of ``diameter_1, diameter_2``
    (mm).
``isic2017`` (``labels.csv`` or the challenge's ``*GroundTruth.csv``)
    Columns ``image_id, melanoma, seborrheic_keratosis``. Images ``images/<id>.jpg``, masks
    ``masks/<id>.png`` (or ``masks/<id>_segmentation.png``). Diagnosis MEL, SEK or NEV;
    malignant = melanoma. There is no patient id, so the image id stands in for it.
``generic`` (``lesions.csv``) - for a user's own collection
    ==============  ========  ===========================================================
    column          required  meaning
    ==============  ========  ===========================================================
    ``image``       yes       image path relative to the folder
    ``malignant``   yes       1/0, true/false, yes/no
    ``mask``        no        mask path relative to the folder (8-bit, nonzero = lesion);
                              empty or missing: the mask is computed (:func:`segment_lesion`)
    ``diagnosis``   no        free text, e.g. BCC, NEV
    ``patient``     no        patient id (used to keep a patient's lesions in one split);
                              defaults to the image file name
    ``diameter_mm`` no        lesion diameter in mm (sets the blended size)
    ``fitzpatrick`` no        skin type 1-6
    ==============  ========  ===========================================================

Rows whose image file is missing are skipped and listed in ``LesionLibrary.skipped``;
:func:`check_lesions` decodes every file once and drops unreadable ones.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from synth.io import InputError, read_image, read_mask

log = logging.getLogger(__name__)

__all__ = [
    "LesionRecord", "LesionLibrary", "read_lesion_library", "load_lesion", "check_lesions",
    "segment_lesion", "lesion_rim_colour", "MALIGNANT_DIAGNOSES", "DIAMETER_PRIOR_MM",
    "draw_diameter_mm", "remove_strands", "is_thin_strand", "trim_background",
]

MALIGNANT_DIAGNOSES = frozenset({"BCC", "SCC", "MEL"})
#: Physical size prior for lesions without a recorded diameter (ISIC 2017 has none):
#: diagnosis -> (median mm, log-normal sigma, min mm, max mm).  Typical clinical sizes, not
#: measured here: acquired naevi are mostly under 6 mm, seborrhoeic keratoses and melanomas
#: at excision are larger (about 5-15 mm).
DIAMETER_PRIOR_MM = {"NEV": (4.5, 0.35, 2.0, 10.0), "MEL": (8.0, 0.40, 3.0, 20.0),
                     "SEK": (7.0, 0.40, 3.0, 20.0), None: (5.0, 0.45, 2.0, 25.0)}
_LAYOUT_FILES = (("pad-ufes-20", "metadata.csv"), ("isic2017", "labels.csv"), ("generic", "lesions.csv"))
_REQUIRED = {
    "pad-ufes-20": ("img_id", "diagnostic"),
    "isic2017": ("image_id", "melanoma", "seborrheic_keratosis"),
    "generic": ("image", "malignant"),
}
_TRUE = {"1", "1.0", "true", "yes", "y", "t", "malignant"}
_FALSE = {"0", "0.0", "false", "no", "n", "f", "benign", ""}


@dataclass(frozen=True)
class LesionRecord:
    """One lesion photo and what is known about it."""

    id: str
    image_path: str
    mask_path: str | None
    malignant: bool
    diagnosis: str | None
    patient: str | None
    fitzpatrick: int | None
    diameter_mm: float | None
    source_layout: str


@dataclass
class LesionLibrary:
    """Lesion records read from one folder, and the rows that were skipped."""

    folder: str
    layout: str
    records: list[LesionRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


# --------------------------------------------------------------------------- reading


def _read_csv(path: Path, layout: str) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: not a readable CSV file ({error})") from None
    missing = [name for name in _REQUIRED[layout] if name not in columns]
    if missing:
        raise InputError(
            f"{path}: missing required column(s) {', '.join(missing)} for the {layout} layout "
            f"(found: {', '.join(columns) or 'none'})"
        )
    return rows


def _float_or_none(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _int_or_none(text) -> int | None:
    value = _float_or_none(text)
    return None if value is None else int(round(value))


def _parse_bool(text: str, path: Path, line: int) -> bool:
    value = str(text).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InputError(f"{path}: line {line}: malignant must be 0/1 or true/false, got {text!r}")


def _find_file(folder: Path, stem: str, suffixes) -> Path | None:
    if Path(stem).suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp") and (folder / stem).is_file():
        return folder / stem
    for suffix in suffixes:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _detect_layout(folder: Path) -> tuple[str, Path]:
    for layout, name in _LAYOUT_FILES:
        if (folder / name).is_file():
            return layout, folder / name
    ground_truth = sorted(folder.glob("*GroundTruth*.csv"))
    if ground_truth:
        return "isic2017", ground_truth[0]
    csvs = sorted(folder.glob("*.csv"))
    if csvs:
        raise InputError(
            f"{csvs[0]}: unknown lesion layout; expected metadata.csv (PAD-UFES-20: img_id, "
            f"diagnostic), labels.csv (ISIC 2017: image_id, melanoma, seborrheic_keratosis) or "
            f"lesions.csv (image, malignant)"
        )
    raise InputError(f"{folder}: no lesion table (metadata.csv, labels.csv or lesions.csv)")


def read_lesion_library(folder) -> LesionLibrary:
    """Read a lesion folder in any supported layout (see the module docstring).

    Parameters
    ----------
    folder : path-like

    Returns
    -------
    LesionLibrary
        ``layout`` is 'pad-ufes-20', 'isic2017' or 'generic'; ``skipped`` lists
        (path, reason) of rows without an image file.

    Raises
    ------
    InputError
        No or unknown table, missing required columns, or no usable lesion left.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    layout, table = _detect_layout(folder)
    # A GroundTruth.csv may name the id column differently only by case; labels.csv is strict.
    rows = _read_csv(table, layout)
    library = LesionLibrary(folder=str(folder), layout=layout)
    reader = {"pad-ufes-20": _pad_record, "isic2017": _isic_record, "generic": _generic_record}[layout]
    for line, row in enumerate(rows, start=2):
        record, problem = reader(folder, table, line, row)
        if record is None:
            library.skipped.append(problem)
            log.warning("skipping lesion %s: %s", *problem)
        else:
            library.records.append(record)
    if not library.records:
        raise InputError(f"{table}: no usable lesion ({len(library.skipped)} rows skipped)")
    log.info("%s: %d lesions (%s layout), %d skipped", folder, len(library.records), layout, len(library.skipped))
    return library


def _pad_record(folder: Path, table: Path, line: int, row: dict):
    image_id = row["img_id"]
    stem = Path(image_id).stem if Path(image_id).suffix else image_id
    # The original release names PNG files in img_id; re-encoded copies may be JPEG.
    image = (
        _find_file(folder / "images", image_id, ())
        or _find_file(folder / "images", stem, (".jpg", ".jpeg", ".png"))
        or _find_file(folder, stem, (".jpg", ".jpeg", ".png"))
    )
    if image is None:
        return None, (str(folder / "images" / f"{stem}.jpg"), "image file missing")
    mask = _find_file(folder / "masks", stem, (".png",))
    diagnosis = row["diagnostic"].upper() or None
    diameters = [d for d in (_float_or_none(row.get("diameter_1")), _float_or_none(row.get("diameter_2"))) if d]
    return LesionRecord(
        id=stem,
        image_path=str(image),
        mask_path=str(mask) if mask else None,
        malignant=diagnosis in MALIGNANT_DIAGNOSES,
        diagnosis=diagnosis,
        patient=row.get("patient_id") or stem,
        fitzpatrick=_int_or_none(row.get("fitspatrick", row.get("fitzpatrick"))),
        diameter_mm=max(diameters) if diameters else None,
        source_layout="pad-ufes-20",
    ), None


def _isic_record(folder: Path, table: Path, line: int, row: dict):
    image_id = row["image_id"]
    image = _find_file(folder / "images", image_id, (".jpg", ".jpeg", ".png")) or _find_file(
        folder, image_id, (".jpg", ".jpeg", ".png")
    )
    if image is None:
        return None, (str(folder / "images" / f"{image_id}.jpg"), "image file missing")
    mask = _find_file(folder / "masks", image_id, (".png",)) or _find_file(
        folder / "masks", f"{image_id}_segmentation", (".png",)
    )
    melanoma = (_float_or_none(row["melanoma"]) or 0.0) >= 0.5
    keratosis = (_float_or_none(row["seborrheic_keratosis"]) or 0.0) >= 0.5
    return LesionRecord(
        id=image_id,
        image_path=str(image),
        mask_path=str(mask) if mask else None,
        malignant=melanoma,
        diagnosis="MEL" if melanoma else ("SEK" if keratosis else "NEV"),
        patient=image_id,
        fitzpatrick=None,
        diameter_mm=None,
        source_layout="isic2017",
    ), None


def _generic_record(folder: Path, table: Path, line: int, row: dict):
    relative = row["image"]
    if not relative:
        return None, (f"{table}:{line}", "empty image path")
    image = folder / relative
    if not image.is_file():
        return None, (str(image), "image file missing")
    mask = folder / row["mask"] if row.get("mask") else None
    if mask is not None and not mask.is_file():
        raise InputError(f"{table}: line {line}: mask file {mask} does not exist")
    diagnosis = row.get("diagnosis") or None
    return LesionRecord(
        id=Path(relative).stem if not row.get("id") else row["id"],
        image_path=str(image),
        mask_path=str(mask) if mask else None,
        malignant=_parse_bool(row["malignant"], table, line),
        diagnosis=diagnosis,
        patient=row.get("patient") or Path(relative).stem,
        fitzpatrick=_int_or_none(row.get("fitzpatrick")),
        diameter_mm=_float_or_none(row.get("diameter_mm")),
        source_layout="generic",
    ), None


# --------------------------------------------------------------------------- loading


def load_lesion(record: LesionRecord) -> tuple[np.ndarray, np.ndarray, str]:
    """Read a lesion's image and mask.

    Parameters
    ----------
    record : LesionRecord

    Returns
    -------
    image : ndarray
        uint8 RGB (H, W, 3).
    mask : ndarray
        bool (H, W), True on the lesion.
    mask_source : str
        'file' when read from ``record.mask_path``, 'auto' when computed by
        :func:`segment_lesion`.

    Raises
    ------
    InputError
        Unreadable or truncated image, mask of another size, empty mask, or no lesion found
        automatically; the message names the file.
    """
    image = read_image(record.image_path)
    if record.mask_path:
        mask = read_mask(record.mask_path, shape=image.shape)
        if not mask.any():
            raise InputError(f"{record.mask_path}: empty mask")
        return image, mask, "file"
    try:
        return image, segment_lesion(image), "auto"
    except ValueError as error:
        raise InputError(f"{record.image_path}: no mask file and automatic segmentation failed ({error})") from None


def check_lesions(library: LesionLibrary) -> tuple[list[LesionRecord], list[tuple[str, str]]]:
    """Decode every lesion once; return the usable records and (path, reason) of the others."""
    good, skipped = [], []
    for record in library.records:
        try:
            load_lesion(record)
        except InputError as error:
            skipped.append((record.image_path, str(error)))
            log.warning("skipping lesion %s", error)
        else:
            good.append(record)
    return good, skipped


# --------------------------------------------------------------------------- numerics


def segment_lesion(
    image: np.ndarray,
    *,
    blur_sigma: float = 2.0,
    smoothing: int = 5,
    min_fraction: float = 0.005,
    background_removed: float = 0.1,
) -> np.ndarray:
    """Segment the lesion of a lesion-centred photo.

    Otsu threshold (on pixels that are not black padding) of a lesion channel - darkness
    plus redness in Lab, :func:`synth.skin.darkness_channel` - after a Gaussian blur; the
    component nearest the image centre is kept, its holes filled and its border smoothed.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    blur_sigma : float
        Gaussian blur before thresholding, pixels.
    smoothing : int
        Diameter of the opening / closing element, pixels.
    min_fraction : float
        Smallest accepted lesion as a fraction of the image.
    background_removed : float
        When more than this fraction of the image is black (value <= 10), the surroundings
        were removed and the largest non-black component is returned as the lesion.

    Returns
    -------
    ndarray
        bool (H, W).

    Raises
    ------
    ValueError
        When no lesion-like region is found.
    """
    from skimage.filters import threshold_otsu

    from synth.skin import darkness_channel

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    height, width = image.shape[:2]
    content = image.max(axis=2) > 10  # black padding (PAD-UFES-20 crops) is not lesion or skin
    if content.sum() < 16:
        raise ValueError("image is empty")
    if (~content).mean() > background_removed:
        # Crops whose surroundings were blacked out (as PAD-UFES-20 in ../shared/data): the
        # remaining content is the lesion.
        count, labels, stats, _ = cv2.connectedComponentsWithStats(content.astype(np.uint8), connectivity=8)
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        if stats[largest, cv2.CC_STAT_AREA] >= min_fraction * height * width:
            return ndimage.binary_fill_holes(labels == largest)
    channel = cv2.GaussianBlur(darkness_channel(image), (0, 0), blur_sigma)
    values = channel[content]
    if values.max() - values.min() < 1e-3:
        raise ValueError("no contrast")
    threshold = threshold_otsu(values)
    mask = (channel > threshold) & content
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (smoothing, smoothing))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        raise ValueError("no lesion found")
    areas = stats[1:, cv2.CC_STAT_AREA]
    distance = np.hypot(centroids[1:, 0] - (width - 1) / 2, centroids[1:, 1] - (height - 1) / 2)
    candidates = np.flatnonzero(areas >= min_fraction * height * width)
    if candidates.size == 0:
        raise ValueError("no lesion found")
    # Lesion photos are centred: nearest the centre, large components preferred on ties.
    best = candidates[np.argmin(distance[candidates] - 1e-3 * np.sqrt(areas[candidates]))] + 1
    lesion = ndimage.binary_fill_holes(labels == best)
    lesion = cv2.morphologyEx(lesion.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
    return lesion


def lesion_rim_colour(
    image: np.ndarray, mask: np.ndarray, *, inner: int = 3, outer: int = 12, min_pixels: int = 30
) -> tuple[np.ndarray, np.ndarray] | None:
    """Colour of the skin just outside a lesion, for matching placement on a body.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    mask : ndarray
        bool (H, W), the lesion.
    inner, outer : int
        The rim is the ring between ``inner`` and ``outer`` pixels outside the mask.
    min_pixels : int
        Fewer non-black rim pixels than this (PAD-UFES-20 crops are black outside the mask)
        gives None.

    Returns
    -------
    (mean, std) or None
        float64 (3,) each: mean and standard deviation of the rim in CIE Lab (L in 0-100,
        a and b signed), or None when there is no skin around the lesion.
    """
    mask = np.asarray(mask, bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {image.shape[:2]}")
    distance = ndimage.distance_transform_edt(~mask)
    ring = (distance > inner) & (distance <= outer) & (np.asarray(image).max(axis=2) > 10)
    if ring.sum() < min_pixels:
        return None
    lab = cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2LAB).astype(np.float64)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    values = lab[ring]
    return values.mean(axis=0), values.std(axis=0)


def draw_diameter_mm(diameter_mm, diagnosis, *, rng: np.random.Generator) -> float:
    """Physical size of a lesion placement in mm.

    The recorded diameter with +-15 % jitter; without one, a draw from the log-normal prior of
    :data:`DIAMETER_PRIOR_MM` for the diagnosis (the generic entry for other diagnoses).
    """
    if diameter_mm:
        return float(diameter_mm) * float(rng.uniform(0.85, 1.15))
    median, sigma, low, high = DIAMETER_PRIOR_MM.get(diagnosis, DIAMETER_PRIOR_MM[None])
    return float(np.clip(np.exp(rng.normal(np.log(median), sigma)), low, high))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def remove_strands(mask: np.ndarray, *, relative_width: float = 0.3) -> np.ndarray:
    """Cut thin appendages (hair-like strands) off a lesion mask.

    A morphological opening by a disc of radius ``relative_width`` times the mask's largest
    inscribed radius (its distance-transform maximum) removes every part of the mask thinner
    than that disc; the largest remaining component is kept, holes filled.

    Parameters
    ----------
    mask : ndarray
        bool (H, W).

    Returns
    -------
    ndarray
        bool (H, W), a subset of ``mask`` (empty when ``mask`` is).
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask.copy()
    inscribed = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5).max()
    radius = int(np.floor(relative_width * inscribed))
    opened = mask
    if radius >= 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        padded = np.pad(mask.astype(np.uint8), radius + 1)
        opened = cv2.morphologyEx(padded, cv2.MORPH_OPEN, kernel)[radius + 1:-radius - 1,
                                                                  radius + 1:-radius - 1] > 0
        if not opened.any():
            opened = mask
    return _largest_component(opened) & mask


def is_thin_strand(mask: np.ndarray, *, min_inscribed_ratio: float = 0.1,
                   min_width_px: float = 1.5) -> bool:
    """True when a lesion mask is a thin strand (looks like a hair), not a lesion.

    The ratio of the mask's largest inscribed radius (distance-transform maximum) to its
    length (long side of its minimum-area rectangle) is 0.5 for a disc, about 0.15 for the
    most elongated PAD-UFES-20 and 0.25 for the most elongated ISIC 2017 masks, and w / (2 L)
    for a strand of width w and length L; masks below ``min_inscribed_ratio``, or whose
    inscribed radius is below ``min_width_px`` (a line 1-2 px wide at the blended size), are
    strands.

    Parameters
    ----------
    mask : ndarray
        bool (H, W).
    """
    mask = _largest_component(np.asarray(mask, bool))
    if not mask.any():
        return True
    inscribed = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5).max()
    points = np.column_stack(np.nonzero(mask)[::-1]).astype(np.float32)
    (_, _), (side_a, side_b), _ = cv2.minAreaRect(points)
    length = max(side_a, side_b) + 1.0
    return bool(inscribed < min_width_px or inscribed / length < min_inscribed_ratio)


def trim_background(image: np.ndarray, mask: np.ndarray, *, level: int = 20,
                    outside_fraction: float = 0.5) -> np.ndarray:
    """Drop the blacked-out background from a lesion mask that reaches over it.

    In crops whose surroundings were removed (black outside the mask, as PAD-UFES-20 in
    ../shared/data), some masks cover part of that black: blended, it would become a black
    hole in the lesion.  When more than ``outside_fraction`` of the pixels outside the mask
    are black (every channel <= ``level``), black pixels inside the mask are removed too and
    the largest remaining component is kept; other crops are returned unchanged.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    mask : ndarray
        bool (H, W).

    Returns
    -------
    ndarray
        bool (H, W), a subset of ``mask``; ``mask`` itself when nothing would be left.
    """
    mask = np.asarray(mask, bool)
    black = np.asarray(image).max(axis=2) <= level
    outside = ~mask
    if not outside.any() or black[outside].mean() <= outside_fraction or not (black & mask).any():
        return mask
    trimmed = _largest_component(mask & ~black)
    return trimmed if trimmed.any() else mask
