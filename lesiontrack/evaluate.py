"""Detection evaluation: FROC, malignant-vs-benign ROC and pixel ROC (Li, Esteva et al. 2016
fig. 4), COCO box AP, and the figures per skin tone, for the FCN detector and the
sliding-window baseline on the same images; recall and precision on real photos.

Sources:

* a synthesized dataset (``dataset.json`` + ``manifest.jsonl``): lesion boxes, malignancy,
  diagnosis and the sample's Fitzpatrick skin type from the manifest, label maps for the
  pixel ROC. Blends too faint to see and the body photo's own lesions (label 3) are
  neither right nor wrong to detect in the AP (COCO crowd regions). The lesions to find are
  the blended ones (benign or malignant); the body photo's own lesions have no diagnosis and
  are not among them, but their recall is reported beside (``real_lesions``);
* any folder of photos with a COCO ``annotations.json``: boxes, and malignancy from the
  category name (``benign`` / ``malignant``) or a ``malignant`` attribute of the annotation
  (``annotation["malignant"]`` or ``annotation["attributes"]["malignant"]``); an optional
  ``diagnosis`` the same way. Photos are looked up beside the file or under ``images/``.
  Annotations with ``iscrowd`` 1 or a category named ambiguous / ignore are uncertain:
  neither right nor wrong to detect. Without label maps there is no pixel ROC. The
  real-photo figures (:mod:`lesiontrack.real_photos`) are added at the operating threshold;
* a folder of body photos with a ``lesions.csv`` (clear and ambiguous lesions marked by
  hand, :func:`lesiontrack.real_photos.read_lesions_csv`): the real-photo figures only.

Counting rule of the FROC and of the sensitivity at a false-positive rate, for both methods:
a detection is a hit when its centroid falls in a true lesion's box (one detection per
lesion, highest score first; :func:`lesiontrack.metrics.match_detections`). A detection that
matches no true lesion is neither right nor wrong, and is dropped before the FROC, when its
centroid lies on a pixel of the sample's label map valued 3 (a lesion of the body photo,
diagnosis unknown) or 255 (ignore: blends too faint to see, ambiguous or automatically found
spots), or inside the box of a region that the source lists as such (``ignore_boxes``: the
manifest's faint blends and real lesions, COCO crowd or ambiguous annotations;
:func:`lesiontrack.metrics.neutral_detections`). Every other unmatched detection, second
detections of a found lesion aside, is a false positive. The detector's training validation
(:func:`lesiontrack.detection.train.evaluate_detector`) also leaves detections on label-3 and
255 pixels out. The AP keeps every detection; its crowd regions are the listed boxes only.
"""
from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lesiontrack import metrics, plots, real_photos
from synth.io import (COCO_ANNOTATIONS, IGNORE, UNKNOWN, InputError, atomic_path, is_dataset,
                      present_lesions, read_image, read_json, read_label_map, read_manifest,
                      write_json)
from synth.progress import progress_bar

log = logging.getLogger(__name__)

FP_RATES = (0.5, 1.0, 2.0, 4.0)
LOW_THRESHOLD = 0.05  # detections are kept down to this score so the FROC sweeps the score
DEFAULT_THRESHOLD = 0.5  # that of ``lesiontrack detect``: the real-photo operating point
#: Fitzpatrick skin types grouped for the per-tone figures.
SKIN_TONE_GROUPS = (("I-III", (1, 2, 3)), ("IV", (4,)), ("V-VI", (5, 6)))
FCN_NAME = "FCN"
BASELINE_NAME = "sliding window"


@dataclass
class AnnotatedImage:
    """One evaluation image and its true lesions.

    Attributes
    ----------
    id : str
    image : Path
    labels : Path or None
        uint8 label map for the pixel ROC, when the source has one.
    boxes : ndarray
        float (M, 4), [x, y, w, h].
    malignant : list
        Per lesion True, False or None (unknown).
    diagnosis : list
        Per lesion a diagnosis string or None.
    ignore_boxes : ndarray
        float (K, 4): lesions that are neither right nor wrong to detect (too faint, of
        unknown position or diagnosis, or marked uncertain).
    real_lesion_boxes : ndarray
        float (R, 4): the body photo's own lesions (label 3, diagnosis unknown), also among
        ``ignore_boxes``; their recall is reported beside the lesions to find.
    fitzpatrick : int or None
        Skin type I-VI (1-6) of the image, when the source records it.
    """

    id: str
    image: Path
    labels: Path | None
    boxes: np.ndarray
    malignant: list = field(default_factory=list)
    diagnosis: list = field(default_factory=list)
    ignore_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    real_lesion_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    fitzpatrick: int | None = None


# --------------------------------------------------------------------------- sources


def _from_dataset(root: Path, split: str | None) -> list[AnnotatedImage]:
    """Annotated images from a synthesized dataset's manifest."""
    items = []
    for record in read_manifest(root):
        if split is not None and record.get("split") != split:
            continue
        lesions = present_lesions(record)
        taught = {id(lesion) for lesion in lesions}
        # Blends labelled ignore (too faint) and the body photo's own lesions (label 3).
        uncertain = [lesion["bbox"] for lesion in record.get("lesions", [])
                     if lesion.get("bbox") and id(lesion) not in taught]
        real = [lesion["bbox"] for lesion in record.get("real_lesions") or []
                if lesion.get("bbox")]
        uncertain += real
        items.append(AnnotatedImage(
            id=str(record["id"]), image=root / record["image"],
            labels=root / record["labels"] if record.get("labels") else None,
            boxes=np.asarray([lesion["bbox"] for lesion in lesions], float).reshape(-1, 4),
            malignant=[_malignant_flag(lesion) for lesion in lesions],
            diagnosis=[lesion.get("diagnosis") for lesion in lesions],
            ignore_boxes=np.asarray(uncertain, float).reshape(-1, 4),
            real_lesion_boxes=np.asarray(real, float).reshape(-1, 4),
            fitzpatrick=_skin_type(record.get("fitzpatrick"))))
    return items


def _skin_type(value):
    """Fitzpatrick type 1-6 from a manifest value (int, "IV", "4"), else None."""
    romans = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6}
    if isinstance(value, str):
        value = romans.get(value.strip().upper(), value.strip())
    try:
        value = int(value)
    except (TypeError, ValueError):
        return None
    return value if 1 <= value <= 6 else None


def skin_tone_group(fitzpatrick) -> str | None:
    """Name of the :data:`SKIN_TONE_GROUPS` group of a Fitzpatrick type (1-6), else None."""
    for name, types in SKIN_TONE_GROUPS:
        if fitzpatrick in types:
            return name
    return None


def _malignant_flag(record: dict):
    """True/False/None from a lesion record's ``malignant`` or ``label`` field."""
    for holder in (record, record.get("attributes") or {}):
        if "malignant" in holder and holder["malignant"] is not None:
            value = holder["malignant"]
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "malignant")
            return bool(value)
    if record.get("label") in (1, 2):
        return record["label"] == 2
    return None


UNCERTAIN_CATEGORIES = ("ambiguous", "ignore")


def _from_coco(root: Path) -> list[AnnotatedImage]:
    """Annotated images from a folder with a COCO annotations.json."""
    path = root / COCO_ANNOTATIONS
    coco = read_json(path)
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise InputError(f"{path}: not a COCO annotation file (no 'images' list)")
    categories = {c.get("id"): str(c.get("name", "")).strip().lower()
                  for c in coco.get("categories", []) if isinstance(c, dict)}
    by_image = {}
    for annotation in coco.get("annotations", []):
        try:
            box = [float(v) for v in annotation["bbox"]]
            image_id = annotation["image_id"]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: annotation without a valid bbox/image_id: "
                             f"{str(annotation)[:80]}") from None
        if len(box) != 4:
            raise InputError(f"{path}: bbox must be [x, y, w, h], got {box}")
        name = categories.get(annotation.get("category_id"), "")
        if annotation.get("iscrowd") or name.startswith(UNCERTAIN_CATEGORIES):
            by_image.setdefault(image_id, []).append((box, None, None, True))
            continue
        if name in ("malignant", "benign"):
            malignant = name == "malignant"
        else:
            malignant = _malignant_flag({k: v for k, v in annotation.items() if k != "label"})
        attributes = annotation.get("attributes") or {}
        diagnosis = annotation.get("diagnosis", attributes.get("diagnosis"))
        by_image.setdefault(image_id, []).append((box, malignant, diagnosis, False))
    items = []
    for entry in coco["images"]:
        try:
            name = entry["file_name"]
        except (KeyError, TypeError):
            raise InputError(f"{path}: image entry without file_name: {str(entry)[:80]}") from None
        candidates = [root / name, root / "images" / name]
        image = next((c for c in candidates if c.is_file()), None)
        if image is None:
            raise InputError(f"{candidates[0]}: no such file (listed in {path})")
        annotated = by_image.get(entry.get("id"), [])
        lesions = [a for a in annotated if not a[3]]
        items.append(AnnotatedImage(
            id=str(entry.get("id", name)), image=image, labels=None,
            boxes=np.asarray([b for b, _, _, _ in lesions], float).reshape(-1, 4),
            malignant=[m for _, m, _, _ in lesions], diagnosis=[d for _, _, d, _ in lesions],
            ignore_boxes=np.asarray([a[0] for a in annotated if a[3]], float).reshape(-1, 4),
            fitzpatrick=_skin_type(entry.get("fitzpatrick"))))
    return items


def source_kind(source) -> str:
    """How :func:`evaluate_detection` reads ``source``.

    Returns
    -------
    str
        ``"dataset"`` (``dataset.json``), else ``"coco"`` (``annotations.json``), else
        ``"lesions.csv"`` (a folder of body photos with ``lesions.csv``).
    """
    root = Path(source)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    if is_dataset(root):
        return "dataset"
    if (root / COCO_ANNOTATIONS).is_file():
        return "coco"
    if (root / real_photos.LESIONS_CSV).is_file():
        return "lesions.csv"
    raise InputError(f"{root}: neither a synthesized dataset (dataset.json) nor a folder of "
                     f"photos with {COCO_ANNOTATIONS} or {real_photos.LESIONS_CSV}")


def read_detection_truth(source, *, split="test", limit=None, names=None) -> list[AnnotatedImage]:
    """The images of a synthesized dataset's split or of a COCO-annotated photo folder.

    Parameters
    ----------
    source : path-like
        Dataset root (``dataset.json``) or folder with ``annotations.json``.
    split : str or None
        Split of a synthesized dataset (ignored for COCO folders); None takes every sample.
    limit : int, optional
        Keep the first ``limit`` images.
    names : iterable of str, optional
        COCO folders: keep only the photos of these names (file names without suffix); each
        must be listed.

    Returns
    -------
    list of AnnotatedImage
    """
    root = Path(source)
    kind = source_kind(root)
    if kind == "dataset":
        items = _from_dataset(root, split)
    elif kind == "coco":
        items = _from_coco(root)
        if names is not None:
            by_name = {item.image.stem: item for item in items}
            items = [by_name[name] for name in real_photos.select_photos(by_name, names, root)]
    else:
        raise InputError(f"{root}: a folder of photos with {real_photos.LESIONS_CSV} only; "
                         "its figures are those of lesiontrack.real_photos")
    if limit is not None:
        items = items[: int(limit)]
    if not items:
        raise InputError(f"{root}: no images to evaluate (split '{split}')")
    return items


# --------------------------------------------------------------------------- detectors


def _fcn_runner(weights, *, threshold=LOW_THRESHOLD, classifier=None, colour_stats=None):
    """A function image -> (lesions, lesion heatmap (H, W)) for the FCN detector.

    With a ``classifier`` the lesions carry the second stage's ``malignancy`` beside the FCN's
    ``malignancy_fcn``; with a ``colour_stats`` model (.pkl) also ``malignancy_colour_stats``.
    """
    from lesiontrack.detection.detect import detect, load_detector
    from lesiontrack.detection.proposals import lesion_probability

    model = load_detector(weights)
    if classifier is not None:
        from lesiontrack.detection.classifier import load_classifier

        classifier = load_classifier(classifier)
    if colour_stats is not None:
        from lesiontrack.baselines.colour_stats import load_colour_stats

        colour_stats = load_colour_stats(colour_stats)

    # Below the operating threshold (the FROC sweep) every region is kept whatever its score
    # and contrast (the contrast of a region grown down to P(lesion) 0.05 is not that of the
    # lesion); at the operating threshold the lesions are those of `lesiontrack detect`.
    filters = {} if threshold >= DEFAULT_THRESHOLD else {"min_score": 0.0, "min_contrast": None}

    def run(image):
        lesions, probabilities = detect(image, model=model, threshold=threshold,
                                        return_heatmap=True, classifier=classifier, **filters)
        if colour_stats is not None and lesions:
            values = colour_stats.score(image, [lesion["bbox"] for lesion in lesions])
            for lesion, value in zip(lesions, values):
                lesion["malignancy_colour_stats"] = round(float(value), 4)
        return lesions, lesion_probability(probabilities)

    return run


def _baseline_runner(path, *, threshold=LOW_THRESHOLD, heatmap=True):
    """A function image -> (lesions, heatmap or None) for the sliding-window baseline."""
    from lesiontrack.baselines.sliding_window import (detect_sliding_window,
                                                      load_sliding_window,
                                                      sliding_window_heatmap)

    model = load_sliding_window(path)

    def run(image):
        return (detect_sliding_window(image, model, threshold=threshold),
                sliding_window_heatmap(image, model) if heatmap else None)

    return run


# --------------------------------------------------------------------------- evaluation


def _finite(value):
    """None for nan/inf (JSON has no NaN), float otherwise."""
    value = float(value)
    return value if math.isfinite(value) else None


def _decimate(*arrays, max_points=400):
    """Keep at most ``max_points`` evenly spaced points of parallel curves (ends kept)."""
    size = len(arrays[0])
    if size <= max_points:
        return [np.asarray(a).tolist() for a in arrays]
    index = np.unique(np.linspace(0, size - 1, max_points).round().astype(int))
    return [np.asarray(a)[index].tolist() for a in arrays]


def score_detections(items, predictions, heatmaps, label_maps, *, rng, thresholds=None,
                     fp_rates=FP_RATES, neutral_maps=None, threshold=DEFAULT_THRESHOLD) -> dict:
    """All detection figures of one method.

    Detections that match no true lesion and lie on a neutral region (``neutral_maps``, the
    items' ``ignore_boxes``) are dropped before the FROC (the counting rule of the module
    docstring); the AP keeps them and counts those in ``ignore_boxes`` as COCO crowd regions.

    Parameters
    ----------
    items : list of AnnotatedImage
    predictions : list of list of dict
        Per image the detected lesions (``centroid``, ``score``, ``malignancy``).
    heatmaps, label_maps : list of ndarray
        float (H, W) lesion scores and uint8 (H, W) label maps of the images that have label
        maps (may be empty).
    rng : numpy.random.Generator
        Pixel subsample of the pixel ROC.
    thresholds : array_like, optional
        FROC thresholds; default every distinct score.
    fp_rates : sequence of float
    neutral_maps : list, optional
        Per image (in the order of ``items``) a bool (H, W) mask of the pixels that are
        neither lesion to find nor background (:func:`neutral_mask` of the label map), or
        None; default None for every image.
    threshold : float
        Detection threshold at which the recall of the body photos' own lesions is also given
        (that of ``lesiontrack detect`` by default).

    Returns
    -------
    dict
        ``froc`` curve, ``sensitivity_at_fp``, ``mean_sensitivity``, ``operating_point``,
        ``per_diagnosis``, ``roc_malignant``, ``roc_pixel`` (curves and AUCs), counts
        (``num_detections``, ``neutral_detections``: dropped at the lowest score), and
        ``real_lesions``: the body photos' own lesions (label 3), their recall at the
        operating point and at ``threshold`` (a lesion is found when a detection's centroid
        falls in its box).
    """
    per_image, per_image_boxes = [], []
    lesion_best, lesion_malignancy = [], []  # per true lesion: matched score, malignancy
    # Every malignancy field of the detections (e.g. the FCN's and the second stage's): per
    # true lesion the matched detection's value, for the comparison on the same lesions.
    fields = sorted({key for lesions in predictions for d in lesions for key in d
                     if key.startswith("malignancy")})
    lesion_fields = {key: [] for key in fields}
    real_best = []  # per real lesion of the body photo: best score of a detection in its box
    neutral_maps = [None] * len(items) if neutral_maps is None else list(neutral_maps)
    if len(neutral_maps) != len(items):
        raise ValueError(f"{len(neutral_maps)} neutral masks for {len(items)} images")
    num_neutral = 0
    for item, lesions, neutral_map in zip(items, predictions, neutral_maps):
        centroids = np.asarray([d["centroid"] for d in lesions], float).reshape(-1, 2)
        scores = np.asarray([d["score"] for d in lesions], float)
        malignancy = np.asarray([d.get("malignancy", np.nan) for d in lesions], float)
        per_image_boxes.append((np.asarray([d["bbox"] for d in lesions], float).reshape(-1, 4),
                                scores))
        pred_to_true, true_to_pred, _ = metrics.match_detections(centroids, item.boxes,
                                                                 scores=scores)
        neutral = metrics.neutral_detections(centroids, pred_to_true, neutral_mask=neutral_map,
                                             neutral_boxes=item.ignore_boxes)
        num_neutral += int(neutral.sum())
        per_image.append((centroids[~neutral], scores[~neutral]))
        inside = metrics.centroid_in_boxes(centroids, item.real_lesion_boxes)
        real_best.append(np.where(inside, scores[:, None], -np.inf).max(axis=0)
                         if len(scores) else np.full(len(item.real_lesion_boxes), -np.inf))
        found = true_to_pred >= 0
        lesion_best.append(np.where(found, scores[np.maximum(true_to_pred, 0)]
                                    if len(scores) else 0.0, -np.inf))
        lesion_malignancy.append(np.where(found, malignancy[np.maximum(true_to_pred, 0)]
                                          if len(scores) else 0.0, np.nan))
        for key, values in lesion_fields.items():
            field_values = np.asarray([d.get(key, np.nan) for d in lesions], float)
            values.append(np.where(found, field_values[np.maximum(true_to_pred, 0)]
                                   if len(scores) else 0.0, np.nan))
    fp, sens, used = metrics.froc(per_image, [item.boxes for item in items],
                                  thresholds=thresholds)
    lesion_best = np.concatenate(lesion_best) if lesion_best else np.zeros(0)
    lesion_malignancy = np.concatenate(lesion_malignancy) if lesion_malignancy else np.zeros(0)
    at_fp = {f"{rate:g}": metrics.sensitivity_at_fp(fp, sens, rate) for rate in fp_rates}
    coco_ap = metrics.coco_average_precision(per_image_boxes, [item.boxes for item in items],
                                             ignore=[item.ignore_boxes for item in items])

    # Operating point: best sensitivity within 1 false positive per image (highest threshold
    # on ties); per-diagnosis sensitivity is read there.
    within = np.flatnonzero(fp <= 1.0 + 1e-12)
    if within.size:
        best = within[np.argmax(sens[within])]
        point_threshold = float(used[best])
        point = {"threshold": point_threshold, "fp_per_image": float(fp[best]),
                 "sensitivity": float(sens[best])}
    else:
        point_threshold = math.inf
        point = {"threshold": None, "fp_per_image": 0.0, "sensitivity": 0.0}
    found_at_point = lesion_best >= point_threshold
    diagnoses = [d for item in items for d in item.diagnosis]
    per_diagnosis = {}
    for name in sorted({str(d) for d in diagnoses if d is not None}):
        mask = np.asarray([str(d) == name if d is not None else False for d in diagnoses])
        per_diagnosis[name] = {"lesions": int(mask.sum()),
                               "found": int(found_at_point[mask].sum()),
                               "sensitivity": float(found_at_point[mask].mean())}
    real_best = np.concatenate(real_best) if real_best else np.zeros(0)
    real_lesions = {
        "lesions": int(len(real_best)),
        "found_at_operating_point": int((real_best >= point_threshold).sum()),
        "recall_at_operating_point": (float((real_best >= point_threshold).mean())
                                      if len(real_best) else None),
        "threshold": float(threshold),
        "found_at_threshold": int((real_best >= threshold).sum()),
        "recall_at_threshold": (float((real_best >= threshold).mean())
                                if len(real_best) else None)}

    # Lesion-level ROC of malignant vs benign over the true lesions found by any detection
    # (Li, Esteva et al. 2016 fig. 4): score = the matched detection's malignancy.
    flags = [m for item in items for m in item.malignant]
    known = np.asarray([m is not None for m in flags], bool)
    truth = np.asarray([bool(m) for m in flags], bool)
    usable = known & np.isfinite(lesion_malignancy) & (lesion_best > -np.inf)
    fpr, tpr, _ = metrics.roc_curve(lesion_malignancy[usable], truth[usable])
    n_malignant, n_benign = int(truth[usable].sum()), int((~truth[usable]).sum())
    malignant_auc = metrics.auc(fpr, tpr) if n_malignant and n_benign else float("nan")
    found_any = lesion_best > -np.inf
    lesion_fields = {key: np.concatenate(values) for key, values in lesion_fields.items()}
    by_field = {key: lesion_auc(values, truth, known & found_any)
                for key, values in lesion_fields.items()}
    per_tone = per_skin_tone(items, per_image, lesion_malignancy, truth, known & found_any,
                             thresholds=thresholds, found_at_point=found_at_point)

    if heatmaps:
        pfpr, ptpr, _ = metrics.pixel_roc(heatmaps, label_maps, rng=rng)
        positives = any(np.isin(labels, (1, 2)).any() for labels in label_maps)
        negatives = any((labels == 0).any() for labels in label_maps)
        pixel_auc = metrics.auc(pfpr, ptpr) if positives and negatives else float("nan")
    else:
        pfpr, ptpr, pixel_auc = np.zeros(0), np.zeros(0), float("nan")

    froc_fp, froc_sens, froc_thr = _decimate(fp, sens, used)
    mfpr, mtpr = _decimate(fpr, tpr)
    pfpr_list, ptpr_list = _decimate(pfpr, ptpr)
    return {
        "num_detections": int(sum(len(p) for p in predictions)),
        "neutral_detections": num_neutral,
        "lesions_found_any_score": int((lesion_best > -np.inf).sum()),
        "sensitivity_at_fp": at_fp,
        "mean_sensitivity": float(np.mean(list(at_fp.values()))) if at_fp else None,
        "operating_point": point,
        "per_diagnosis": per_diagnosis,
        "real_lesions": real_lesions,
        "coco_ap": coco_ap,
        "per_skin_tone": per_tone,
        "froc": {"fp_per_image": froc_fp, "sensitivity": froc_sens, "thresholds": froc_thr},
        "roc_malignant": {"auc": _finite(malignant_auc), "malignant": n_malignant,
                          "benign": n_benign, "fpr": mfpr, "tpr": mtpr},
        "roc_pixel": {"auc": _finite(pixel_auc), "fpr": pfpr_list, "tpr": ptpr_list},
        "roc_malignant_by_field": by_field,
        "_curves": {"froc": (fp, sens), "roc_malignant": (fpr, tpr, malignant_auc),
                    "roc_pixel": (pfpr, ptpr, pixel_auc)},
        "_lesions": {"found": found_any, "known": known, "truth": truth,
                     "fields": lesion_fields},
    }


def per_skin_tone(items, per_image, lesion_malignancy, truth, usable, *, thresholds=None,
                  fp_rate=1.0, found_at_point=None) -> dict:
    """Sensitivity at ``fp_rate`` false positives per image and malignancy AUC by skin tone.

    Images are grouped by their Fitzpatrick type (:data:`SKIN_TONE_GROUPS`); each group gets
    its own FROC (false positives per image of that group) and the malignant-vs-benign AUC of
    its found lesions.

    Parameters
    ----------
    items : list of AnnotatedImage
    per_image : list of (centroids, scores)
        Per image float (N, 2) and (N,), as :func:`lesiontrack.metrics.froc`.
    lesion_malignancy : ndarray
        float (M,) over the true lesions of all images in order: the matched detection's
        malignancy (NaN when not found).
    truth : ndarray
        bool (M,) malignant.
    usable : ndarray
        bool (M,) lesions of known diagnosis that were found.
    thresholds : array_like, optional
        FROC thresholds.
    fp_rate : float
    found_at_point : ndarray, optional
        bool (M,), lesions found at the operating point chosen on all images: adds
        ``sensitivity_at_operating_point`` (the same threshold for every group).

    Returns
    -------
    dict
        Group name -> ``images``, ``lesions``, ``sensitivity_at_1fp`` (or at ``fp_rate``),
        ``auc_malignant``, ``malignant``, ``benign``; only groups with images; empty when no
        image has a skin type.
    """
    groups = [skin_tone_group(item.fitzpatrick) for item in items]
    lesion_groups = np.asarray([group for item, group in zip(items, groups)
                                for _ in range(len(item.boxes))], dtype=object)
    result = {}
    for name, _ in SKIN_TONE_GROUPS:
        chosen = [index for index, group in enumerate(groups) if group == name]
        if not chosen:
            continue
        fp, sens, _ = metrics.froc([per_image[i] for i in chosen],
                                   [items[i].boxes for i in chosen], thresholds=thresholds)
        mask = lesion_groups == name if len(lesion_groups) else np.zeros(0, bool)
        auc = lesion_auc(lesion_malignancy, truth, usable & mask)
        result[name] = {"images": len(chosen), "lesions": int(mask.sum()),
                        f"sensitivity_at_{fp_rate:g}fp": metrics.sensitivity_at_fp(fp, sens,
                                                                                   fp_rate),
                        "auc_malignant": auc["auc"], "malignant": auc["malignant"],
                        "benign": auc["benign"]}
        if found_at_point is not None:
            result[name]["sensitivity_at_operating_point"] = (
                float(np.asarray(found_at_point)[mask].mean()) if mask.any() else None)
    return result


def lesion_auc(scores, truth, mask) -> dict:
    """Malignant-vs-benign AUC of ``scores`` over the lesions where ``mask`` holds.

    Parameters
    ----------
    scores : ndarray
        float (M,) per true lesion (NaN: no score, left out).
    truth : ndarray
        bool (M,) malignant.
    mask : ndarray
        bool (M,) lesions to use.

    Returns
    -------
    dict
        ``auc`` (None when a class is missing), ``malignant``, ``benign``.
    """
    scores = np.asarray(scores, float)
    usable = np.asarray(mask, bool) & np.isfinite(scores)
    malignant = int(truth[usable].sum())
    benign = int(usable.sum()) - malignant
    if not malignant or not benign:
        return {"auc": None, "malignant": malignant, "benign": benign}
    fpr, tpr, _ = metrics.roc_curve(scores[usable], truth[usable])
    return {"auc": _finite(metrics.auc(fpr, tpr)), "malignant": malignant, "benign": benign}


#: (method, malignancy field) -> row name of the comparison on the same lesions.
SCORE_NAMES = {(FCN_NAME, "malignancy_fcn"): "FCN malignant channel (mean over the lesion)",
               (FCN_NAME, "malignancy_colour_stats"): "colour statistics (on the FCN's lesions)",
               (BASELINE_NAME, "malignancy"): "sliding window"}


def malignancy_comparison(lesions: dict) -> dict:
    """Malignancy AUC of every method and score on the same true lesions.

    The lesions used are those with a known diagnosis that every method found (a detection's
    centroid in the true box at the lowest detection threshold); each is scored by each
    method's matched detection, so the figures differ only by the score.

    Parameters
    ----------
    lesions : dict
        Method name -> the ``_lesions`` entry of :func:`score_detections` (``found``,
        ``known``, ``truth``, ``fields``: per malignancy field an (M,) array).

    Returns
    -------
    dict
        ``lesions``, ``malignant``, ``benign`` (the common set) and ``rows``: a list of
        ``{"name", "method", "field", "auc"}``.
    """
    if not lesions:
        return {"lesions": 0, "malignant": 0, "benign": 0, "rows": []}
    first = next(iter(lesions.values()))
    common = first["known"].copy()
    for entry in lesions.values():
        common &= entry["found"]
    truth = first["truth"]
    rows = []
    for method, entry in lesions.items():
        # The FCN's "malignancy" is the second stage's when the FCN's own is kept beside it.
        own = "second stage" if "malignancy_fcn" in entry["fields"] else SCORE_NAMES[
            (FCN_NAME, "malignancy_fcn")]
        for key, values in entry["fields"].items():
            default = own if (method, key) == (FCN_NAME, "malignancy") else f"{method}: {key}"
            rows.append({"name": SCORE_NAMES.get((method, key), default), "method": method,
                         "field": key, "auc": lesion_auc(values, truth, common)["auc"]})
        fields = entry["fields"]
        if "malignancy_fcn" in fields and "malignancy_colour_stats" in fields:
            # The simplest ensemble of the two graders: the mean of their probabilities.
            mean = (np.asarray(fields["malignancy"], float)
                    + np.asarray(fields["malignancy_colour_stats"], float)) / 2
            rows.append({"name": "second stage and colour statistics (mean)", "method": method,
                         "field": "malignancy+malignancy_colour_stats",
                         "auc": lesion_auc(mean, truth, common)["auc"]})
    return {"lesions": int(common.sum()), "malignant": int(truth[common].sum()),
            "benign": int((~truth[common]).sum()), "rows": rows}


def neutral_mask(labels) -> np.ndarray:
    """Pixels of a label map that are neither lesion to find nor background.

    Parameters
    ----------
    labels : ndarray
        uint8 (H, W) label map.

    Returns
    -------
    ndarray
        bool (H, W): label 3 (a lesion of the body photo, diagnosis unknown) or 255 (ignore).
    """
    return np.isin(np.asarray(labels), (UNKNOWN, IGNORE))


def _run_method(name, runner, items, *, rng, thresholds, threshold=DEFAULT_THRESHOLD):
    """Run one detector over every image and score it."""
    predictions, heatmaps, label_maps, neutral_maps = [], [], [], []
    started = time.perf_counter()
    for item in progress_bar(items, desc=name, unit="image", leave=False):
        image = read_image(item.image)
        lesions, heatmap = runner(image)
        predictions.append(list(lesions))
        neutral_maps.append(None)
        if item.labels is not None:
            labels = read_label_map(item.labels)
            neutral = neutral_mask(labels)
            if neutral.shape != image.shape[:2]:  # detections are in the photo's pixels
                neutral = cv2.resize(neutral.astype(np.uint8), (image.shape[1], image.shape[0]),
                                     interpolation=cv2.INTER_NEAREST).astype(bool)
            neutral_maps[-1] = neutral
            heatmap = np.asarray(heatmap, np.float32)
            if heatmap.shape != labels.shape:
                heatmap = cv2.resize(heatmap, (labels.shape[1], labels.shape[0]),
                                     interpolation=cv2.INTER_LINEAR)
            heatmaps.append(heatmap)
            label_maps.append(labels)
    elapsed = time.perf_counter() - started
    result = score_detections(items, predictions, heatmaps, label_maps, rng=rng,
                              thresholds=thresholds, neutral_maps=neutral_maps,
                              threshold=threshold)
    result["seconds_per_image"] = elapsed / max(len(items), 1)
    return result


def _summary_table(results: dict, counts: dict) -> str:
    """Markdown table of the headline figures."""
    def cell(value):
        return "n/a" if value is None else f"{value:.3f}"

    rates = [f"{rate:g}" for rate in FP_RATES]
    lines = [
        "# Detection evaluation", "",
        f"{counts['images']} images, {counts['lesions']} lesions ({counts['malignant']} "
        f"malignant, {counts['benign']} benign, {counts['unknown']} unknown).", "",
        "| method | " + " | ".join(f"sens@{r} FP" for r in rates)
        + " | AP@0.5 | AP@[.5:.95] | AUC malignant | AUC pixel | s/image |",
        "|---|" + "---|" * (len(rates) + 5),
    ]
    for name, result in results.items():
        lines.append(
            f"| {name} | " + " | ".join(cell(result["sensitivity_at_fp"][r]) for r in rates)
            + f" | {cell(result['coco_ap']['ap50'])} | {cell(result['coco_ap']['ap'])}"
            f" | {cell(result['roc_malignant']['auc'])} | {cell(result['roc_pixel']['auc'])}"
            f" | {result['seconds_per_image']:.2f} |")
    lines += ["", "Detections matching no true lesion with the centroid on a label-3 or 255 "
                  "pixel or in a listed ignore box are not counted: "
              + "; ".join(f"{name} {result['neutral_detections']} of "
                          f"{result['num_detections']}" for name, result in results.items())
              + "."]
    real = [(name, result["real_lesions"]) for name, result in results.items()
            if result["real_lesions"]["lesions"]]
    if real:
        lines += ["", "The body photos' own lesions (label 3, diagnosis unknown; not among the "
                      "lesions to find), found when a detection's centroid is in the box:", "",
                  "| method | lesions | recall at the operating point (<= 1 FP/image) | "
                  "recall at the threshold |", "|---|---|---|---|"]
        for name, entry in real:
            point = results[name]["operating_point"]["threshold"]
            lines.append(
                f"| {name} | {entry['lesions']} | {cell(entry['recall_at_operating_point'])} "
                f"({entry['found_at_operating_point']} found; threshold {cell(point)}) | "
                f"{cell(entry['recall_at_threshold'])} ({entry['found_at_threshold']} found; "
                f"threshold {entry['threshold']:g}) |")
    tones = [(name, result["per_skin_tone"]) for name, result in results.items()
             if result["per_skin_tone"]]
    if tones:
        lines += ["", "By Fitzpatrick skin type of the image (sens@1 FP: each group's own "
                      "FROC; operating point: the threshold chosen on all images; AUC over the "
                      "group's found lesions):", "",
                  "| method | skin type | images | lesions | sens@1 FP | sens at the operating "
                  "point | AUC malignant |", "|---|---|---|---|---|---|---|"]
        for name, groups in tones:
            for group, entry in groups.items():
                lines.append(f"| {name} | {group} | {entry['images']} | {entry['lesions']} | "
                             f"{cell(entry['sensitivity_at_1fp'])} | "
                             f"{cell(entry.get('sensitivity_at_operating_point'))} | "
                             f"{cell(entry['auc_malignant'])} |")
    diagnoses = sorted({d for result in results.values() for d in result["per_diagnosis"]})
    if diagnoses:
        lines += ["", "Sensitivity per diagnosis at the best operating point within 1 FP/image:",
                  "", "| method | " + " | ".join(diagnoses) + " |",
                  "|---|" + "---|" * len(diagnoses)]
        for name, result in results.items():
            row = []
            for diagnosis in diagnoses:
                entry = result["per_diagnosis"].get(diagnosis)
                row.append("n/a" if entry is None else
                           f"{entry['sensitivity']:.2f} ({entry['found']}/{entry['lesions']})")
            lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _comparison_table(comparison: dict) -> str:
    """Markdown table of :func:`malignancy_comparison` (empty without rows)."""
    if not comparison["rows"]:
        return ""
    lines = ["", f"Malignancy AUC on the same {comparison['lesions']} lesions "
                 f"({comparison['malignant']} malignant, {comparison['benign']} benign; found "
                 "by every method):", "", "| score | AUC malignant |", "|---|---|"]
    for row in comparison["rows"]:
        auc = "n/a" if row["auc"] is None else f"{row['auc']:.3f}"
        lines.append(f"| {row['name']} | {auc} |")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _output_folder(path):
    """Create ``path`` for the outputs; if the body fails, remove the folders it created."""
    path = Path(path)
    created = [folder for folder in (path, *path.parents) if not folder.exists()]
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if created:
            shutil.rmtree(created[-1], ignore_errors=True)
        raise


def _check_photos(paths):
    """Decode every photo once before anything is written (InputError names a bad one)."""
    for path in paths:
        read_image(path)


def evaluate_detection(source, out_dir, *, split="test", weights="default", baseline=None,
                       classifier=None, colour_stats=None, limit=None, threshold_grid=None,
                       detection_threshold=LOW_THRESHOLD, threshold=DEFAULT_THRESHOLD,
                       bodies_of=None, seed=0) -> dict:
    """Evaluate the FCN detector and/or the sliding-window baseline and write the figures.

    Parameters
    ----------
    source : path-like
        Synthesized dataset root, a photo folder with a COCO ``annotations.json``, or a folder
        of body photos with a ``lesions.csv`` (:func:`source_kind`).
    out_dir : path-like
        Receives ``metrics.json`` and ``summary.md``; for a dataset or COCO folder also
        ``froc.png``, ``roc_malignant.png``, ``roc_pixel.png`` (all methods on the same axes);
        for a photo folder also ``photos.csv`` (a row per method and photo) and per photo
        ``<photo>_overlay.png`` (FCN; ``<photo>_overlay_sliding_window.png`` for the
        baseline): pictures of the photos, to keep out of version control. Created only when
        the inputs are usable; removed again if the evaluation fails.
    split : str
        Split of a synthesized dataset, or with ``bodies_of`` the split whose body photos are
        evaluated.
    weights : "default", path-like or None
        FCN detector weights; None skips the FCN.
    baseline : path-like, optional
        Sliding-window model (.npz) to evaluate alongside.
    classifier : "default", path-like or None
        Second-stage classifier grading the FCN's lesions (``malignancy``; the FCN's own
        score stays as ``malignancy_fcn``); None: the FCN's score only.
    colour_stats : path-like, optional
        Colour-statistics model (.pkl) also scoring the FCN's lesions. Every malignancy
        score is compared on the lesions all methods found (``malignancy_comparison`` in
        ``metrics.json``, a table in ``summary.md``).
    limit : int, optional
        Evaluate the first ``limit`` images.
    threshold_grid : array_like, optional
        FROC score thresholds; default every distinct score (exact curve).
    detection_threshold : float
        Lowest score a detection is kept at; the FROC and AP sweep the scores above it.
    threshold : float
        Detection threshold of the real-photo figures (photo folders) and of the recall of
        the body photos' own lesions (synthesized datasets), by default that of
        ``lesiontrack detect``.
    bodies_of : path-like, optional
        A synthesized dataset: evaluate only the photos of the folder that it put in
        ``split`` (its ``splits.json`` ``bodies``), e.g. the test bodies, never trained on.
    seed : int
        Seeds the pixel subsample of the pixel ROC.

    Returns
    -------
    dict
        The content of ``metrics.json``.
    """
    factories = _method_factories(weights, baseline, classifier, colour_stats)
    kind = source_kind(source)
    if bodies_of is not None and kind == "dataset":
        raise InputError(f"{source}: --bodies-of selects photos of a photo folder, not of a "
                         "synthesized dataset")
    names = None if bodies_of is None else real_photos.split_body_photos(bodies_of, split)
    selection = {"bodies_of": None if bodies_of is None else str(bodies_of),
                 "split": split if kind == "dataset" or bodies_of is not None else None}
    if kind == "lesions.csv":
        truths = real_photos.read_photo_truth(source, names=names, limit=limit)
        _check_photos([truth.image for truth in truths])
        with _output_folder(out_dir) as out:
            results = _real_photo_methods(factories, truths, out, threshold=threshold)
            report = {"source": str(source),
                      "truth": str(Path(source) / real_photos.LESIONS_CSV), **selection,
                      "models": _models(weights, classifier, baseline),
                      "real_photos": {"threshold": threshold, "methods": results}}
            header = "# Detection evaluation\n\n" + (
                "" if bodies_of is None else
                f"The body photos of {source} that {bodies_of} puts in split '{split}'.\n\n")
            _write_reports(out, report, header + real_photos.summary_markdown(
                results, threshold=threshold))
        return report

    items = read_detection_truth(source, split=split, limit=limit, names=names)
    if kind == "coco":
        _check_photos([item.image for item in items])
    flags = [m for item in items for m in item.malignant]
    counts = {"images": len(items), "lesions": len(flags),
              "malignant": sum(1 for m in flags if m is True),
              "benign": sum(1 for m in flags if m is False),
              "unknown": sum(1 for m in flags if m is None)}
    with _output_folder(out_dir) as out:
        results = {}
        for name, make in factories.items():
            log.info("evaluating %s on %d images", name, len(items))
            results[name] = _run_method(name, make(detection_threshold), items,
                                        rng=np.random.default_rng(seed),
                                        thresholds=threshold_grid, threshold=threshold)
        curves = {name: result.pop("_curves") for name, result in results.items()}
        comparison = malignancy_comparison({name: result.pop("_lesions")
                                            for name, result in results.items()})
        plots.plot_froc({name: c["froc"] for name, c in curves.items()}, out / "froc.png",
                        title="FROC (lesion centroid inside the true box)", max_fp=8)
        plots.plot_roc({name: c["roc_malignant"] for name, c in curves.items()},
                       out / "roc_malignant.png", title="Malignant vs benign (found lesions)")
        plots.plot_roc({name: c["roc_pixel"] for name, c in curves.items()
                        if len(c["roc_pixel"][0])},
                       out / "roc_pixel.png", title="Lesion vs background pixels")
        report = {
            "source": str(source), **selection,
            "models": _models(weights, classifier, baseline),
            "detection_threshold": detection_threshold, "fp_rates": list(FP_RATES),
            "counts": counts, "methods": results, "malignancy_comparison": comparison,
        }
        summary = _summary_table(results, counts) + _comparison_table(comparison)
        if kind == "coco":
            truths = [real_photos.truth_from_boxes(item.image.stem, item.image, item.boxes,
                                                   item.ignore_boxes) for item in items]
            photo_results = _real_photo_methods(factories, truths, out, threshold=threshold)
            report["real_photos"] = {"threshold": threshold, "methods": photo_results}
            summary += "\n" + real_photos.summary_markdown(photo_results, threshold=threshold)
        _write_reports(out, report, summary)
    return report


def _method_factories(weights, baseline, classifier, colour_stats) -> dict:
    """Method name -> function(threshold, heatmap=True) making that method's runner."""
    factories = {}
    if weights is not None:
        graders = {key: value for key, value in (("classifier", classifier),
                                                 ("colour_stats", colour_stats))
                   if value is not None}
        factories[FCN_NAME] = lambda threshold, heatmap=True: _fcn_runner(
            weights, threshold=threshold, **graders)
    if baseline is not None:
        factories[BASELINE_NAME] = lambda threshold, heatmap=True: _baseline_runner(
            baseline, threshold=threshold, heatmap=heatmap)
    if not factories:
        raise ValueError("nothing to evaluate: give detector weights and/or a baseline model")
    return factories


def _real_photo_methods(factories, truths, out, *, threshold) -> dict:
    """Every method's real-photo figures at ``threshold``; per-photo rows to photos.csv."""
    results = {}
    for name, make in factories.items():
        log.info("evaluating %s on %d photos at threshold %g", name, len(truths), threshold)
        suffix = "" if name == FCN_NAME else "_" + name.replace(" ", "_")
        results[name] = real_photos.evaluate_photos(truths, make(threshold, heatmap=False),
                                                    method=name, overlay_dir=out,
                                                    overlay_suffix=suffix)
    real_photos.write_rows_csv(out / "photos.csv",
                               [row for result in results.values() for row in result["photos"]])
    return results


def _models(weights, classifier, baseline) -> dict:
    """Name and short SHA-256 of each model file used (``model_cache.weights_id``)."""
    from lesiontrack.model_cache import resolve_weights, weights_id

    def identify(value, kind):
        if value is None:
            return None
        try:
            return weights_id(resolve_weights(value, kind))
        except InputError:  # not a file (a stand-in given in-process)
            return {"path": str(value)}

    return {"detector": identify(weights, "detector"),
            "classifier": identify(classifier, "classifier") if weights is not None else None,
            "baseline": None if baseline is None else {"path": str(baseline)}}


def _write_reports(out, report, summary):
    """metrics.json and summary.md, atomically."""
    write_json(out / "metrics.json", report)
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(summary)
