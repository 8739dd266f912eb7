"""Body library: photos of skin onto which lesions are blended.

Layout of a body folder (every part but the photos is optional)::

    <folder>/
        <name>.jpg | .png | ...   body photos, directly in the folder
        skin/<name>.png           skin mask, 8-bit, nonzero = skin (else computed by
                                  synth.skin.segment_skin)
        bodies.csv                columns name, mm_per_px: the scale of a photo, overriding
                                  the default (0.4 mm/px, which fits iToBoS tiles where
                                  moles of 4-6 mm span 10-20 px)
        annotations.json          COCO boxes of lesions already on the photos, matched to
                                  photos by file name (``iscrowd`` 1 or a category named
                                  "ambiguous" or "ignore": an uncertain lesion)
        labels/<name>.txt         YOLO boxes: "class cx cy w h", normalised to [0, 1]
        lesions.csv               iToBoS style: tile, x, y, radius_px[, label, note]; each row
                                  gives the circle of radius r about (x, y), i.e. the square box
                                  [x - r, y - r, 2r, 2r]; with a ``label`` column, rows whose
                                  label starts with "lesion" are lesions, the others (e.g.
                                  "ambiguous") uncertain

Real lesions with a known position (COCO and YOLO boxes, ``lesion`` rows of lesions.csv) are
segmented inside their box (:func:`synth.skin.segment_lesion_in_box`) and labelled 3, lesion of
unknown diagnosis, by the dataset writer.  Uncertain annotations and the spots found by
:func:`synth.skin.find_lesion_spots` are labelled 255, ignore, because the body photos are not
fully annotated.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from synth.io import InputError, list_images, read_image, read_json, read_mask
from synth.skin import (find_lesion_spots, ignore_mask_from_spots, segment_lesion_in_box,
                        segment_skin)

log = logging.getLogger(__name__)

__all__ = ["BodyRecord", "BodyLibrary", "read_body_library", "load_body", "DEFAULT_MM_PER_PX"]

DEFAULT_MM_PER_PX = 0.4


@dataclass(frozen=True)
class BodyRecord:
    """One body photo: its files, lesion boxes and scale.

    ``boxes`` holds every annotated box [x, y, w, h] (pixels); ``lesions`` the real lesions
    with known position among them, each (x, y, w, h, source, shape) with source 'coco',
    'yolo' or 'lesions.csv' and shape 'box' or 'circle'.
    """

    name: str
    image_path: str
    skin_mask_path: str | None = None
    boxes: tuple = ()
    mm_per_px: float = DEFAULT_MM_PER_PX
    lesions: tuple = ()


@dataclass
class BodyLibrary:
    """Body records read from one folder, and the files that were skipped."""

    folder: str
    records: list[BodyRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


# --------------------------------------------------------------------------- boxes


_UNCERTAIN_CATEGORIES = ("ambiguous", "ignore")


def _coco_boxes(path: Path) -> dict[str, list]:
    """name -> [(box, is_lesion)]."""
    data = read_json(path)
    try:
        names = {image["id"]: Path(image["file_name"]).stem for image in data["images"]}
        categories = {c["id"]: str(c.get("name", "")).lower() for c in data.get("categories", [])}
        boxes: dict[str, list] = {}
        for annotation in data.get("annotations", []):
            x, y, w, h = (float(v) for v in annotation["bbox"])
            uncertain = bool(annotation.get("iscrowd")) or categories.get(
                annotation.get("category_id"), "").startswith(_UNCERTAIN_CATEGORIES)
            boxes.setdefault(names[annotation["image_id"]], []).append(([x, y, w, h], not uncertain))
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path}: not a COCO annotation file ({error!r})") from None
    return boxes


def _yolo_boxes(path: Path, width: int, height: int) -> list:
    boxes = []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            cx, cy, w, h = (float(v) for v in parts[1:5])
        except ValueError:
            raise InputError(f"{path}: line {line_number}: expected 'class cx cy w h'") from None
        if len(parts) < 5:
            raise InputError(f"{path}: line {line_number}: expected 'class cx cy w h'")
        boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height])
    return boxes


def _itobos_boxes(path: Path) -> dict[str, list]:
    """name -> [(box, is_lesion)]; without a label column every row is a lesion."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("tile", "x", "y", "radius_px") if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: missing required column(s) {', '.join(missing)}")
        boxes: dict[str, list] = {}
        for line_number, row in enumerate(reader, start=2):
            try:
                x, y, r = float(row["x"]), float(row["y"]), float(row["radius_px"])
            except ValueError:
                raise InputError(f"{path}: line {line_number}: x, y, radius_px must be numbers") from None
            label = (row.get("label") or "").strip().lower()
            is_lesion = "label" not in reader.fieldnames or label.startswith("lesion")
            boxes.setdefault(Path(row["tile"]).stem, []).append(
                ([x - r, y - r, 2 * r, 2 * r], is_lesion))
    return boxes


def _scales(path: Path) -> dict[str, float]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("name", "mm_per_px") if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: missing required column(s) {', '.join(missing)}")
        scales = {}
        for line_number, row in enumerate(reader, start=2):
            try:
                value = float(row["mm_per_px"])
            except ValueError:
                value = float("nan")
            if not np.isfinite(value) or value <= 0:
                raise InputError(f"{path}: line {line_number}: mm_per_px must be a positive number")
            scales[Path(row["name"]).stem] = value
    return scales


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image file, or None when it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return None if image is None else (image.shape[1], image.shape[0])


# --------------------------------------------------------------------------- library


def read_body_library(folder, *, mm_per_px: float = DEFAULT_MM_PER_PX) -> BodyLibrary:
    """Read a body folder (layout in the module docstring).

    Parameters
    ----------
    folder : path-like
    mm_per_px : float
        Scale of photos not listed in ``bodies.csv``.

    Returns
    -------
    BodyLibrary

    Raises
    ------
    InputError
        No such folder, a malformed side file, or no body photo.
    """
    folder = Path(folder)
    images = list_images(folder)
    if not images:
        raise InputError(f"{folder}: no body photos (.jpg, .png, ...) in the folder")
    scales = _scales(folder / "bodies.csv") if (folder / "bodies.csv").is_file() else {}
    boxes: dict[str, list] = {}  # name -> [(box, is_lesion, source, shape)]
    if (folder / "annotations.json").is_file():
        for name, found in _coco_boxes(folder / "annotations.json").items():
            boxes.setdefault(name, []).extend((b, k, "coco", "box") for b, k in found)
    if (folder / "lesions.csv").is_file():
        for name, found in _itobos_boxes(folder / "lesions.csv").items():
            boxes.setdefault(name, []).extend((b, k, "lesions.csv", "circle") for b, k in found)
    library = BodyLibrary(folder=str(folder))
    for path in images:
        name = path.stem
        if path.stat().st_size == 0:
            library.skipped.append((str(path), "empty file"))
            continue
        record_boxes = list(boxes.get(name, []))
        yolo = folder / "labels" / f"{name}.txt"
        if yolo.is_file():
            size = _image_size(path)
            if size is None:
                library.skipped.append((str(path), "not a readable image"))
                continue
            record_boxes.extend((b, True, "yolo", "box") for b in _yolo_boxes(yolo, *size))
        skin = folder / "skin" / f"{name}.png"
        library.records.append(BodyRecord(
            name=name,
            image_path=str(path),
            skin_mask_path=str(skin) if skin.is_file() else None,
            boxes=tuple(tuple(float(v) for v in box) for box, _, _, _ in record_boxes),
            mm_per_px=float(scales.get(name, mm_per_px)),
            lesions=tuple((*(float(v) for v in box), source, shape)
                          for box, is_lesion, source, shape in record_boxes if is_lesion),
        ))
    for path, reason in library.skipped:
        log.warning("skipping body %s: %s", path, reason)
    if not library.records:
        raise InputError(f"{folder}: no usable body photo")
    return library


def load_body(record: BodyRecord, *, find_spots: bool = True, spot_margin: float = 3.0) -> dict:
    """Read a body photo with its skin mask and a mask of lesions already on it.

    Parameters
    ----------
    record : BodyRecord
    find_spots : bool
        Also mark spots found by :func:`synth.skin.find_lesion_spots` as existing lesions.
    spot_margin : float
        Pixels added around each spot and box in the ignore mask.

    Returns
    -------
    dict
        ``image`` uint8 (H, W, 3); ``skin`` bool (H, W); ``ignore`` bool (H, W), existing
        lesions (every box and the found spots) to be labelled 255; ``known`` uint16 (H, W),
        0 or the 1-based index into ``known_lesions`` of the real lesion segmented there (to be
        labelled 3, over ``ignore``); ``known_lesions`` list of dicts (``box`` [x, y, w, h],
        ``source``, ``mask_source`` 'segmented' or 'disc'); ``spots`` float64 (N, 3) x, y,
        radius; ``mask_source`` 'file' or 'auto' (of the skin mask).

    Raises
    ------
    InputError
        Unreadable photo, skin mask of another size, or no skin; the message names the file.
    """
    image = read_image(record.image_path)
    if record.skin_mask_path:
        skin = read_mask(record.skin_mask_path, shape=image.shape)
        if not skin.any():
            raise InputError(f"{record.skin_mask_path}: empty skin mask")
        source = "file"
    else:
        try:
            skin = segment_skin(image)
        except ValueError as error:
            raise InputError(f"{record.image_path}: {error}") from None
        source = "auto"
    spots = find_lesion_spots(image, skin) if find_spots else np.zeros((0, 3))
    ignore = ignore_mask_from_spots(image.shape, spots, margin=spot_margin)
    height, width = image.shape[:2]
    for x, y, w, h in record.boxes:
        x0, y0 = max(0, int(np.floor(x - spot_margin))), max(0, int(np.floor(y - spot_margin)))
        x1 = min(width, int(np.ceil(x + w + spot_margin)))
        y1 = min(height, int(np.ceil(y + h + spot_margin)))
        ignore[y0:y1, x0:x1] = True
    known = np.zeros((height, width), np.uint16)
    known_lesions = []
    for x, y, w, h, box_source, shape in record.lesions:
        mask, offset, how = segment_lesion_in_box(image, (x, y, w, h))
        if not mask.any():
            continue
        known_lesions.append({"box": [x, y, w, h], "source": box_source, "shape": shape,
                              "mask_source": how})
        x0, y0 = offset
        region = known[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]]
        region[mask] = len(known_lesions)
    return {"image": image, "skin": skin, "ignore": ignore, "known": known,
            "known_lesions": known_lesions, "spots": spots, "mask_source": source}
