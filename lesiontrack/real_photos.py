"""Detection on real photos annotated in part: recall, precision, false positives per photo.

Real body photos carry hand-marked lesions: clear ones, marked on every photo (recall is
measured on them), and ambiguous ones (faint or doubtful); freckles nobody marked are neither.
At one detection threshold, a detection on a clear lesion is right, one only on ambiguous
annotations is neither right nor wrong, and one on no annotation is a false positive
(:func:`lesiontrack.metrics.partial_annotation_outcome`; "on" is
:func:`lesiontrack.metrics.detections_on_annotations`: the detection's box holds the lesion's
centre or its centroid lies within the lesion's radius + 4 px).

Truth comes from ``lesions.csv`` in the photo folder (iToBoS style; :func:`read_lesions_csv`)
or from a COCO ``annotations.json`` (read by :mod:`lesiontrack.evaluate`, converted by
:func:`truth_from_boxes`). :func:`split_body_photos` names the body photos a synthesized
dataset put in one split, to evaluate only on photos that training never saw.
"""
from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lesiontrack import metrics
from lesiontrack.detection.defaults import MIN_CONTRAST, MIN_SCORE
from synth.io import InputError, atomic_path, list_images, read_image, read_json, write_image
from synth.progress import progress_bar

log = logging.getLogger(__name__)

LESIONS_CSV = "lesions.csv"
REQUIRED_COLUMNS = ("tile", "x", "y", "radius_px")
CLEAR_LABEL = "lesion"  # a label starting with this is a clear lesion
AMBIGUOUS_LABELS = ("ambiguous", "ignore", "uncertain")

#: Columns of the per-photo rows (``photos.csv``, ``metrics.json``).
ROW_FIELDS = ("method", "photo", "clear", "clear_found", "ambiguous", "ambiguous_found",
              "detections", "true_positives", "neutral", "false_positives", "recall",
              "precision", "seconds")

# Overlay colours (RGB): green right / found, yellow neutral / ambiguous, red wrong / missed.
RIGHT_COLOUR = (0, 220, 0)
NEUTRAL_COLOUR = (255, 210, 0)
WRONG_COLOUR = (255, 30, 30)
MISSED_COLOUR = (255, 0, 255)


@dataclass
class PhotoTruth:
    """One photo and its annotated lesions.

    Attributes
    ----------
    name : str
        Photo name without suffix.
    image : Path
    centres : ndarray
        float (M, 2), [x, y] pixels.
    radii : ndarray
        float (M,), pixels.
    clear : ndarray
        bool (M,), True for a clear lesion, False for an ambiguous annotation.
    """

    name: str
    image: Path
    centres: np.ndarray
    radii: np.ndarray
    clear: np.ndarray


# --------------------------------------------------------------------------- truth


def read_lesions_csv(path) -> dict[str, list[tuple[float, float, float, bool]]]:
    """Annotated lesions of an iToBoS-style ``lesions.csv``.

    Columns ``tile, x, y, radius_px`` and optional ``label`` and ``note``: ``tile`` names the
    photo (suffix optional), ``x, y`` the lesion's centre and ``radius_px`` its radius in
    pixels; a ``label`` starting with ``lesion`` marks a clear lesion, ``ambiguous``,
    ``ignore`` or ``uncertain`` a doubtful one; without a ``label`` column every row is clear.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    dict
        Photo name (no suffix) -> list of (x, y, radius, clear).

    Raises
    ------
    InputError
        Naming the file (and line) when it cannot be read, lacks a column, or holds a value
        that is not a number or a known label.
    """
    path = Path(path)
    lesions: dict[str, list] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise InputError(f"{path}: missing column(s) {', '.join(missing)} (expected "
                                 f"{','.join(REQUIRED_COLUMNS)},label[,note])")
            reader.fieldnames = columns
            for line, row in enumerate(reader, start=2):
                name, lesion = _lesion_row(path, line, row, "label" in columns)
                lesions.setdefault(name, []).append(lesion)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text CSV file (cannot decode it as UTF-8)") from None
    except csv.Error as error:
        raise InputError(f"{path}: not a readable CSV file ({error})") from None
    return lesions


def _lesion_row(path, line, row, labelled):
    """(photo name, (x, y, radius, clear)) of one CSV row; InputError naming the line."""
    if None in row or any(row.get(c) is None for c in REQUIRED_COLUMNS):
        raise InputError(f"{path}: line {line}: expected one value per column")
    try:
        x, y, radius = (float(row[c]) for c in ("x", "y", "radius_px"))
    except ValueError:
        raise InputError(f"{path}: line {line}: x, y and radius_px must be numbers") from None
    if not all(math.isfinite(v) for v in (x, y, radius)) or radius < 0:
        raise InputError(f"{path}: line {line}: x, y must be finite and radius_px >= 0")
    label = (row.get("label") or "").strip().lower()
    if not labelled or label.startswith(CLEAR_LABEL):
        clear = True
    elif label in AMBIGUOUS_LABELS:
        clear = False
    else:
        raise InputError(f"{path}: line {line}: label {label!r} is neither 'lesion' nor "
                         f"'ambiguous'")
    name = Path(row["tile"].strip()).stem
    if not name:
        raise InputError(f"{path}: line {line}: empty tile name")
    return name, (x, y, radius, clear)


def truth_from_boxes(name, image, boxes, ambiguous_boxes=()) -> PhotoTruth:
    """A photo's truth from boxes: centre of each box, radius half its longer side.

    Parameters
    ----------
    name : str
    image : path-like
    boxes, ambiguous_boxes : array_like
        float (M, 4) and (K, 4), [x, y, w, h]: clear lesions and ambiguous annotations.

    Returns
    -------
    PhotoTruth
    """
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    ambiguous_boxes = np.asarray(ambiguous_boxes, float).reshape(-1, 4)
    every = np.concatenate([boxes, ambiguous_boxes])
    return PhotoTruth(name=str(name), image=Path(image),
                      centres=every[:, :2] + every[:, 2:] / 2.0,
                      radii=every[:, 2:].max(axis=1) / 2.0 if len(every) else np.zeros(0),
                      clear=np.r_[np.ones(len(boxes), bool), np.zeros(len(ambiguous_boxes), bool)])


def split_body_photos(dataset, split) -> list[str]:
    """Names of the body photos a synthesized dataset put in ``split`` (its ``splits.json``).

    Parameters
    ----------
    dataset : path-like
        Dataset root written by ``synth make-dataset``.
    split : str
        ``train``, ``val`` or ``test``.

    Returns
    -------
    list of str
        Sorted photo names (no suffix).
    """
    path = Path(dataset) / "splits.json"
    if not path.is_file():
        raise InputError(f"{path}: no such file (--bodies-of needs a synthesized dataset)")
    splits = read_json(path)
    bodies = splits.get("bodies") if isinstance(splits, dict) else None
    if not isinstance(bodies, dict):
        raise InputError(f"{path}: no 'bodies' mapping of body photos to splits")
    names = sorted(name for name, value in bodies.items() if value == split)
    if not names:
        raise InputError(f"{path}: no body photos in split {split!r} (splits: "
                         f"{', '.join(sorted(set(map(str, bodies.values()))))})")
    return names


def photos_by_name(folder: Path) -> dict[str, Path]:
    """Photo name (no suffix) -> file, directly in ``folder``; InputError on a shared name."""
    photos = {}
    for path in list_images(folder):
        if path.stem in photos:
            raise InputError(f"{path}: {photos[path.stem].name} has the same name; which photo "
                             f"the annotations mean is ambiguous")
        photos[path.stem] = path
    return photos


def read_photo_truth(folder, *, names=None, limit=None) -> list[PhotoTruth]:
    """The photos of a folder and their lesions from the folder's ``lesions.csv``.

    Every photo directly in the folder is evaluated (a photo without rows has no lesion:
    any detection on it is a false positive); every ``tile`` of the CSV must be a photo of
    the folder.

    Parameters
    ----------
    folder : path-like
    names : iterable of str, optional
        Keep only these photos (e.g. :func:`split_body_photos`); each must be in the folder.
    limit : int, optional
        Keep the first ``limit`` photos (by name).

    Returns
    -------
    list of PhotoTruth
    """
    folder = Path(folder)
    table = read_lesions_csv(folder / LESIONS_CSV)
    photos = photos_by_name(folder)
    unknown = sorted(set(table) - set(photos))
    if unknown:
        raise InputError(f"{folder / LESIONS_CSV}: no photo named {unknown[0]} in {folder}"
                         + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""))
    truths = []
    for name in select_photos(photos, names, folder, limit):
        rows = table.get(name, [])
        truths.append(PhotoTruth(name=name, image=photos[name],
                                 centres=np.asarray([r[:2] for r in rows], float).reshape(-1, 2),
                                 radii=np.asarray([r[2] for r in rows], float),
                                 clear=np.asarray([r[3] for r in rows], bool)))
    return truths


def select_photos(available, names, folder, limit=None) -> list[str]:
    """Sorted names of ``available`` kept by ``names`` and ``limit``; InputError if one is missing."""
    chosen = sorted(available)
    if names is not None:
        names = sorted(set(names))
        missing = [name for name in names if name not in available]
        if missing:
            raise InputError(f"{folder}: no photo named {', '.join(missing)}")
        chosen = names
    if limit is not None:
        chosen = chosen[: int(limit)]
    if not chosen:
        raise InputError(f"{folder}: no photos to evaluate")
    return chosen


# --------------------------------------------------------------------------- figures


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else None


def score_photo(truth: PhotoTruth, lesions) -> tuple[dict, np.ndarray, np.ndarray]:
    """One photo's row: lesions found, right detections, neutral ones and false positives.

    Parameters
    ----------
    truth : PhotoTruth
    lesions : list of dict
        Detections (``bbox`` [x, y, w, h], ``centroid`` [x, y]).

    Returns
    -------
    row : dict
        ``photo``, ``clear``, ``clear_found``, ``ambiguous``, ``ambiguous_found``,
        ``detections``, ``true_positives``, ``neutral``, ``false_positives``, ``recall``
        (None without clear lesions), ``precision`` (None without right or wrong detections).
    found : ndarray
        bool (M,), per annotation.
    outcome : ndarray
        int8 (N,), per detection (``lesiontrack.metrics.TRUE_DETECTION`` etc.).
    """
    on = metrics.detections_on_annotations(
        [d["bbox"] for d in lesions], [d["centroid"] for d in lesions], truth.centres,
        truth.radii)
    found, outcome = metrics.partial_annotation_outcome(on, truth.clear)
    right = int((outcome == metrics.TRUE_DETECTION).sum())
    wrong = int((outcome == metrics.FALSE_DETECTION).sum())
    clear = int(truth.clear.sum())
    row = {"photo": truth.name, "clear": clear, "clear_found": int(found[truth.clear].sum()),
           "ambiguous": int((~truth.clear).sum()),
           "ambiguous_found": int(found[~truth.clear].sum()), "detections": len(lesions),
           "true_positives": right, "neutral": int((outcome == metrics.NEUTRAL_DETECTION).sum()),
           "false_positives": wrong}
    row["recall"] = _ratio(row["clear_found"], clear)
    row["precision"] = _ratio(right, right + wrong)
    return row, found, outcome


def summarise_photos(rows) -> dict:
    """Totals of per-photo rows (:func:`score_photo`).

    Returns
    -------
    dict
        ``num_photos``, the summed counts, ``recall_clear`` (clear lesions found / clear lesions),
        ``precision`` (right / (right + false positives)), ``fp_per_photo``,
        ``detections_per_photo``, ``seconds_per_photo``; rates None when undefined.
    """
    keys = ("clear", "clear_found", "ambiguous", "ambiguous_found", "detections",
            "true_positives", "neutral", "false_positives")
    total = {key: int(sum(row[key] for row in rows)) for key in keys}
    count = len(rows)
    seconds = [row["seconds"] for row in rows if row.get("seconds") is not None]
    return {"num_photos": count, **total,
            "recall_clear": _ratio(total["clear_found"], total["clear"]),
            "recall_ambiguous": _ratio(total["ambiguous_found"], total["ambiguous"]),
            "precision": _ratio(total["true_positives"],
                                total["true_positives"] + total["false_positives"]),
            "fp_per_photo": _ratio(total["false_positives"], count),
            "detections_per_photo": _ratio(total["detections"], count),
            "seconds_per_photo": float(np.mean(seconds)) if seconds else None}


def evaluate_photos(truths, runner, *, method, overlay_dir=None, overlay_suffix="") -> dict:
    """Run a detector on every photo and score it against the annotations.

    Parameters
    ----------
    truths : list of PhotoTruth
    runner : callable
        ``runner(image uint8 (H, W, 3)) -> (lesions, heatmap)``, at the operating threshold.
    method : str
        Name recorded in the rows.
    overlay_dir : path-like, optional
        Receives ``<photo>_overlay<overlay_suffix>.png`` (:func:`draw_evaluation_overlay`).
    overlay_suffix : str

    Returns
    -------
    dict
        :func:`summarise_photos` and ``photos``: the rows (``ROW_FIELDS``).
    """
    rows = []
    for truth in progress_bar(truths, desc=method, unit="photo", leave=False):
        image = read_image(truth.image)
        started = time.perf_counter()
        lesions, _ = runner(image)
        seconds = time.perf_counter() - started
        row, found, outcome = score_photo(truth, lesions)
        rows.append({"method": method, **row, "seconds": round(seconds, 3)})
        if overlay_dir is not None:
            write_image(Path(overlay_dir) / f"{truth.name}_overlay{overlay_suffix}.png",
                        draw_evaluation_overlay(image, truth, lesions, found, outcome))
    return {**summarise_photos(rows), "photos": rows}


def draw_evaluation_overlay(image, truth: PhotoTruth, lesions, found, outcome) -> np.ndarray:
    """The photo with annotations as circles and detections as boxes, coloured by outcome.

    Circles (radius + 4 px): clear lesion found green, missed magenta; ambiguous yellow,
    thin. Boxes: right green, neutral yellow, false positive red. A legend on a black band
    added above the photo (nothing of the photo is covered).

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    truth : PhotoTruth
    lesions : list of dict
        Detections with ``bbox``.
    found : ndarray
        bool (M,) per annotation.
    outcome : ndarray
        int8 (N,) per detection.

    Returns
    -------
    ndarray
        uint8 RGB (H + band, W, 3), a new array; the photo starts at row ``band``.
    """
    overlay = np.ascontiguousarray(image, np.uint8).copy()
    scale = max(0.4, min(overlay.shape[:2]) / 1000)
    thick = max(1, int(round(2 * scale)))
    for (x, y), radius, clear, hit in zip(truth.centres, truth.radii, truth.clear, found):
        colour = (RIGHT_COLOUR if hit else MISSED_COLOUR) if clear else NEUTRAL_COLOUR
        cv2.circle(overlay, (int(round(x)), int(round(y))),
                   int(round(radius + metrics.ANNOTATION_MARGIN)), colour,
                   thick if clear else 1, cv2.LINE_AA)
    colours = {metrics.TRUE_DETECTION: RIGHT_COLOUR, metrics.NEUTRAL_DETECTION: NEUTRAL_COLOUR,
               metrics.FALSE_DETECTION: WRONG_COLOUR}
    for lesion, result in zip(lesions, outcome):
        x, y, w, h = (int(round(v)) for v in lesion["bbox"])
        cv2.rectangle(overlay, (x - 1, y - 1), (x + w, y + h), colours[int(result)], thick)
    legend = [("circle: clear found", RIGHT_COLOUR), ("clear missed", MISSED_COLOUR),
              ("ambiguous", NEUTRAL_COLOUR), ("box: right", RIGHT_COLOUR),
              ("neutral", NEUTRAL_COLOUR), ("false positive", WRONG_COLOUR)]
    font = 0.45 * scale
    left, baseline = 6, int(18 * scale)
    band = np.zeros((baseline + int(8 * scale), overlay.shape[1], 3), np.uint8)
    for text, colour in legend:
        cv2.putText(band, text, (left, baseline), cv2.FONT_HERSHEY_SIMPLEX, font, colour,
                    1, cv2.LINE_AA)
        left += cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, 1)[0][0] + int(14 * scale)
    return np.concatenate([band, overlay])


# --------------------------------------------------------------------------- outputs


def write_rows_csv(path, rows) -> None:
    """Per-photo rows as CSV (``ROW_FIELDS``), written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ROW_FIELDS, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else
                                 round(row[k], 4) if isinstance(row[k], float) else row[k])
                             for k in ROW_FIELDS})


def _cell(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary_markdown(results: dict, *, threshold) -> str:
    """Markdown tables of the real-photo figures of every method, then the per-photo rows.

    Parameters
    ----------
    results : dict
        Method name -> :func:`evaluate_photos` result.
    threshold : float

    Returns
    -------
    str
    """
    first = next(iter(results.values()))
    lines = [
        "## Real photos", "",
        f"{first['num_photos']} photos, {first['clear']} clear lesions, {first['ambiguous']} "
        f"ambiguous; detection threshold {threshold:g} (the FCN also with the least score "
        f"{MIN_SCORE:g} and visible contrast {MIN_CONTRAST:g} of `lesiontrack detect`). "
        "A detection on a clear lesion is right, "
        "on an ambiguous one neither right nor wrong, elsewhere a false positive.", "",
        "| method | recall clear | precision | FP/photo | detections/photo | ambiguous found "
        "| s/photo |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {_cell(r['recall_clear'])} ({r['clear_found']}/{r['clear']}) | "
            f"{_cell(r['precision'])} ({r['true_positives']}/"
            f"{r['true_positives'] + r['false_positives']}) | {_cell(r['fp_per_photo'], 2)} | "
            f"{_cell(r['detections_per_photo'], 2)} | {r['ambiguous_found']}/{r['ambiguous']} "
            f"| {_cell(r['seconds_per_photo'], 2)} |")
    lines += ["", "| method | photo | clear found | ambiguous found | detections | right | "
                  "neutral | false positives |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        for row in r["photos"]:
            lines.append(f"| {name} | {row['photo']} | {row['clear_found']}/{row['clear']} | "
                         f"{row['ambiguous_found']}/{row['ambiguous']} | {row['detections']} | "
                         f"{row['true_positives']} | {row['neutral']} | "
                         f"{row['false_positives']} |")
    return "\n".join(lines) + "\n"
