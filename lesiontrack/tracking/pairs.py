"""Pairs of photos with known correspondences, for the tracking evaluation.

* :func:`synthesized_pairs`: the pairs of a synthesized dataset (``synth make-dataset
  --pairs``); keypoints are the t0 lesion centres and random skin pixels, carried to t1 by the
  true flow; the true flow and the instance maps of both visits come along;
* :func:`folder_pairs`: a folder of real pairs ``<pair>_t0.<ext>``, ``<pair>_t1.<ext>`` (any
  suffix of :data:`synth.io.IMAGE_SUFFIXES`) and a ``keypoints.csv`` with a header line and
  the columns ``pair,x0,y0,x1,y1,kind``: one row per keypoint, its [x, y] in pixels in t0 and
  its true position in t1; a ``kind`` that starts with ``lesion`` (``lesion``,
  ``lesion-nevus``, ...) marks a lesion centre, anything else (``skin``) another point;
* :func:`stereo_pair`: the Middlebury 2014 motorcycle stereo pair shipped with scikit-image,
  out of domain.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesiontrack import metrics
from lesiontrack.imaging import MIN_SIDE
from synth.io import IMAGE_SUFFIXES, InputError, is_dataset, load_sample, read_image, read_manifest

STEREO_WIDTH = 740
KEYPOINT_COLUMNS = ("pair", "x0", "y0", "x1", "y1", "kind")


@dataclass
class TrackingPair:
    """Two photos and their known correspondences.

    ``points0``, ``points1`` float (N, 2) [x, y] keypoints in t0 and their true t1 positions;
    ``kind`` str (N,) ("lesion..." for lesion centres); ``instance`` int (N,) lesion id (0 for
    other points); ``centres1`` lesion id -> t1 centre [x, y]; ``flow`` float32 (H, W, 2) and
    ``valid`` bool (H, W) the dense truth, or None; ``instances0``, ``instances1`` uint16
    (H, W) the true lesions of both visits (same id = same lesion), or None.
    """

    name: str
    image0: np.ndarray
    image1: np.ndarray
    points0: np.ndarray
    points1: np.ndarray
    kind: np.ndarray
    instance: np.ndarray
    centres1: dict
    flow: np.ndarray | None = None
    valid: np.ndarray | None = None
    instances0: np.ndarray | None = None
    instances1: np.ndarray | None = None

    @property
    def lesion(self) -> np.ndarray:
        """bool (N,): which keypoints are lesion centres."""
        return np.array([str(k).startswith("lesion") for k in self.kind], bool)


# --------------------------------------------------------------------------- pair sources


def synthesized_pairs(root, *, split="test", limit=None, rng, n_skin=100) -> list[TrackingPair]:
    """The tracking pairs of a synthesized dataset's ``split``, first ``limit`` of them.

    Keypoints are the t0 lesion centres (instance centroids) and ``n_skin`` random skin
    pixels, carried to t1 by the true flow (:func:`lesiontrack.metrics.sample_keypoints_from_flow`).
    """
    root = Path(root)
    records = [r for r in read_manifest(root) if r.get("pair") and r.get("split") == split]
    if not records:
        raise InputError(f"{root}: no tracking pairs in split {split!r}")
    pairs = []
    for record in records[:limit]:
        sample = load_sample(root, record, pair=True)
        keypoints = metrics.sample_keypoints_from_flow(sample["flow"], sample["valid"],
                                                       sample["instances"], rng=rng,
                                                       n_skin=n_skin)
        pairs.append(TrackingPair(
            name=record["id"], image0=sample["image"], image1=sample["image1"], **keypoints,
            centres1=metrics.instance_centroids(sample["instances1"]), flow=sample["flow"],
            valid=sample["valid"], instances0=sample["instances"],
            instances1=sample["instances1"]))
    return pairs


def folder_pairs(folder, *, limit=None) -> list[TrackingPair]:
    """Real pairs: ``<pair>_t0.<ext>``, ``<pair>_t1.<ext>`` and ``keypoints.csv``.

    Every keypoint row whose ``kind`` starts with ``lesion`` is one lesion centre; the t1
    lesion centres of a pair are the candidates of "match, nearest". Pairs in name order.
    """
    folder = Path(folder)
    table = folder / "keypoints.csv"
    if not table.is_file():
        raise InputError(f"{folder}: neither a synthesized dataset nor a folder with "
                         "keypoints.csv")
    rows: dict[str, list] = {}
    with open(table, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(handle)
        missing = set(KEYPOINT_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"{table}: missing columns {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                point = [float(row[key]) for key in ("x0", "y0", "x1", "y1")]
            except (TypeError, ValueError):
                raise InputError(f"{table}: line {line}: coordinates are not numbers") from None
            if not all(math.isfinite(value) for value in point):
                raise InputError(f"{table}: line {line}: coordinates are not finite")
            rows.setdefault(row["pair"], []).append((point, (row["kind"] or "").strip().lower()))
    if not rows:
        raise InputError(f"{table}: no keypoints")
    pairs = []
    for name in sorted(rows)[:limit]:
        images = [_read_pair_image(folder, name, visit) for visit in ("t0", "t1")]
        points = np.array([point for point, _ in rows[name]], np.float64)
        kind = np.array([kind for _, kind in rows[name]], dtype=object)
        lesion = np.array([k.startswith("lesion") for k in kind], bool)
        instance = np.where(lesion, np.cumsum(lesion), 0).astype(np.int64)
        pairs.append(TrackingPair(
            name=name, image0=images[0], image1=images[1], points0=points[:, :2],
            points1=points[:, 2:], kind=kind, instance=instance,
            centres1={int(i): p for i, p in zip(instance[lesion], points[lesion, 2:])}))
    return pairs


def _read_pair_image(folder, name, visit):
    """The photo ``<name>_<visit>.<ext>`` of a real pairs folder, uint8 RGB (H, W, 3)."""
    path = _pair_image(folder, name, visit)
    image = read_image(path)
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise InputError(f"{path}: {width}x{height} pixels is too small; need at least "
                         f"{MIN_SIDE}x{MIN_SIDE}")
    return image


def _pair_image(folder, name, visit):
    """The one image ``<name>_<visit>.<ext>`` of a real pairs folder."""
    found = [path for path in sorted(folder.glob(f"{_escape(name)}_{visit}.*"))
             if path.suffix.lower() in IMAGE_SUFFIXES]
    if not found:
        raise InputError(f"{folder}: no image {name}_{visit}.<ext> for pair {name!r} "
                         f"(suffixes {', '.join(IMAGE_SUFFIXES)})")
    if len(found) > 1:
        raise InputError(f"{folder}: several images for {name}_{visit}: "
                         f"{', '.join(path.name for path in found)}")
    return found[0]


def _escape(name):
    """``name`` with glob wildcards escaped."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def read_pairs(source, *, split="test", limit=None, rng, n_skin=100) -> list[TrackingPair]:
    """Pairs of a synthesized dataset (:func:`synthesized_pairs`) or a real pairs folder."""
    source = Path(source)
    if not source.is_dir():
        raise InputError(f"{source}: no such folder")
    if is_dataset(source):
        return synthesized_pairs(source, split=split, limit=limit, rng=rng, n_skin=n_skin)
    return folder_pairs(source, limit=limit)


def stereo_pair(*, rng, n_points=200) -> TrackingPair:
    """Middlebury 2014 motorcycle (scikit-image): flow dx = -disparity on its valid pixels.

    Images are scaled to at most :data:`STEREO_WIDTH` px wide (the disparity alike); valid
    pixels have a finite disparity > 0.
    """
    import cv2
    from skimage import data

    left, right, disparity = data.stereo_motorcycle()
    height, width = left.shape[:2]
    valid = np.isfinite(disparity) & (disparity > 0)
    if width > STEREO_WIDTH:
        scale = STEREO_WIDTH / width
        size = (STEREO_WIDTH, round(height * scale))
        left = cv2.resize(left, size, interpolation=cv2.INTER_AREA)
        right = cv2.resize(right, size, interpolation=cv2.INTER_AREA)
        disparity = cv2.resize(np.where(valid, disparity, 0).astype(np.float32), size,
                               interpolation=cv2.INTER_NEAREST) * scale
        valid = cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    flow = np.zeros(disparity.shape + (2,), np.float32)
    flow[..., 0] = np.where(valid, -disparity, 0)
    keypoints = metrics.sample_keypoints_from_flow(flow, valid, np.zeros(valid.shape, np.uint16),
                                                   rng=rng, n_skin=n_points)
    keypoints["kind"][:] = "scene"
    return TrackingPair(name="stereo_motorcycle", image0=np.ascontiguousarray(left),
                        image1=np.ascontiguousarray(right), **keypoints, centres1={},
                        flow=flow, valid=valid)


def lesions_from_instances(instances) -> list[dict]:
    """Lesion records (as :func:`lesiontrack.detection.detect.detect` returns them) of a
    uint16 (H, W) instance map: ``id`` (the instance), ``centroid``, ``bbox``, ``area_px``."""
    instances = np.asarray(instances)
    lesions = []
    for instance, centre in metrics.instance_centroids(instances).items():
        ys, xs = np.nonzero(instances == instance)
        lesions.append({"id": instance, "centroid": [float(centre[0]), float(centre[1])],
                        "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1,
                                 int(np.ptp(ys)) + 1], "area_px": int(xs.size)})
    return lesions


def both_visits(pair: TrackingPair) -> set:
    """Ids of the true lesions present in both visits of a synthesized pair."""
    ids0 = set(np.unique(pair.instances0).tolist()) - {0}
    return ids0 & (set(np.unique(pair.instances1).tolist()) - {0})
