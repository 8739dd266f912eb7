"""Lesion detection on photos: heatmap, lesion list, overlay (Li, Esteva et al. 2016, sec. 4).

``detect(image)`` (also ``lesiontrack.detect``) runs the FCN over the whole photo (padded to
its stride, tiled when large), turns the heatmap into lesions
(:mod:`lesiontrack.detection.proposals`) and returns one record per lesion.
:func:`detect_files` does that for photo files and writes, per photo, the lesion list
(JSON, or one COCO file for all), an overlay with numbered boxes and a heatmap picture.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from lesiontrack.detection.defaults import MIN_CONTRAST, MIN_SCORE
from lesiontrack.detection.proposals import heatmap_to_lesions, lesion_probability
from lesiontrack.imaging import check_image, pad_to_stride
from lesiontrack.model_cache import cached_model, graph_function, resolve_weights, weights_id
from synth.io import InputError, read_image, write_image, write_json
from synth.progress import progress_bar

log = logging.getLogger(__name__)

# Above this many pixels a photo is processed in overlapping tiles to bound memory.
MAX_PIXELS = 1280 * 1280
TILE = 1024
# Context kept around each tile and cut away afterwards (about the receptive field).
TILE_MARGIN = 64

BENIGN_COLOUR = np.array([0, 200, 0], np.float32)
MALIGNANT_COLOUR = np.array([230, 0, 0], np.float32)


def _run(model, image):
    """Model probabilities float32 (H, W, C) for float32 (H, W, 3) padded to the stride."""
    return np.asarray(graph_function(model)(image[None]), np.float32)[0]


def predict_heatmap(model, image, *, max_pixels=MAX_PIXELS, tile=TILE, margin=TILE_MARGIN):
    """Class probabilities of every pixel of a photo.

    The photo is reflect-padded to a multiple of the model's stride and the padding cropped
    from the result. Photos with more than ``max_pixels`` pixels are processed in tiles of
    ``tile`` x ``tile`` with ``margin`` pixels of context on each side, so that memory stays
    bounded whatever the photo size.

    Parameters
    ----------
    model : keras.Model
        Detector (:func:`lesiontrack.detection.model.FCN`).
    image : ndarray
        uint8 RGB (H, W, 3).
    max_pixels, tile, margin : int

    Returns
    -------
    ndarray
        float32 (H, W, 3): P(background), P(benign), P(malignant).
    """
    image = check_image(image, "image", min_side=1)
    from lesiontrack.detection.model import model_stride

    stride = model_stride(model)
    height, width = image.shape[:2]
    if height * width <= max_pixels:
        return _predict_padded(model, image, stride)
    out = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            y0, x0 = max(top - margin, 0), max(left - margin, 0)
            y1, x1 = min(top + tile + margin, height), min(left + tile + margin, width)
            probabilities = _predict_padded(model, image[y0:y1, x0:x1], stride)
            if out is None:
                out = np.zeros((height, width, probabilities.shape[2]), np.float32)
            bottom, right = min(top + tile, height), min(left + tile, width)
            out[top:bottom, left:right] = probabilities[top - y0:bottom - y0, left - x0:right - x0]
    return out


def _predict_padded(model, image, stride):
    """Reflect-pad to the stride, predict, crop back."""
    padded, (height, width) = pad_to_stride(image, stride, mode="reflect")
    return _run(model, padded.astype(np.float32))[:height, :width]


def load_detector(weights="default"):
    """The detector with ``weights`` ("default" or a path) for inference, loaded once per file.

    Its batch normalisations are folded into the convs
    (:func:`lesiontrack.detection.model.fold_batch_norm`: same probabilities, less time); load
    :func:`lesiontrack.detection.model.FCN` to train or to copy the tracker's trunk.
    """
    from lesiontrack.detection.model import FCN, fold_batch_norm

    return cached_model("detector", weights, lambda path: fold_batch_norm(FCN(weights=path)))


def lesion_contrasts(image, lesions, instances, *, skin=None):
    """Visible contrast (Delta E00 against a ring of skin, :func:`synth.contrast.lesion_contrast`)
    of every lesion record, the ring leaving out every proposal and, with ``skin``, non-skin."""
    from synth.contrast import lesion_contrast, ring_reach

    others = instances > 0
    if skin is not None:
        others = others | ~skin
    height, width = instances.shape
    contrasts = []
    for lesion in lesions:
        x, y, w, h = lesion["bbox"]
        reach = ring_reach(lesion["area_px"])  # the window holds the lesion and its ring
        window = (slice(max(y - reach, 0), min(y + h + reach, height)),
                  slice(max(x - reach, 0), min(x + w + reach, width)))
        contrasts.append(lesion_contrast(image[window], instances[window] == lesion["id"],
                                         exclude=others[window]))
    return contrasts


def visible_lesions(image, lesions, instances, *, skin=None, min_contrast=None):
    """The lesion records with their ``contrast`` (Delta E00, :func:`lesion_contrasts`; None
    without a ring of skin), keeping those at least ``min_contrast`` (all when None)."""
    kept = []
    for lesion, contrast in zip(lesions, lesion_contrasts(image, lesions, instances, skin=skin)):
        known = bool(np.isfinite(contrast))
        lesion = {**lesion, "contrast": round(float(contrast), 2) if known else None}
        if min_contrast is None or not known or contrast >= min_contrast:
            kept.append(lesion)
    return kept


def detect(image, *, model=None, weights="default", threshold=0.5, return_heatmap=False,
           skin="auto", classifier="default", min_score=MIN_SCORE, min_contrast=MIN_CONTRAST,
           **proposal_options):
    """Find lesions on a photo.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    model : keras.Model, optional
        A loaded detector; otherwise loaded from ``weights``.
    weights : "default" or path-like
        Used when ``model`` is None.
    threshold : float
        P(lesion) threshold of :func:`lesiontrack.detection.proposals.heatmap_to_lesions`.
    return_heatmap : bool
        Also return the float32 (H, W, 3) probabilities (off skin set to background when a
        skin mask was used).
    skin : "auto", None or ndarray
        Keep lesions to skin (:mod:`lesiontrack.detection.skin`): "auto" segments the
        photo's skin (:func:`synth.skin.segment_skin`; every pixel is used when it finds
        none), a bool (H, W) array is used as the skin mask, None uses every pixel.
    classifier : "default", path-like, keras.Model or None
        Second-stage classifier (:mod:`lesiontrack.detection.classifier`) that grades every
        lesion; None keeps the FCN's malignant share as ``malignancy``.
    min_score : float
        Drop lesions whose ``score`` (mean P(lesion)) is below this (:data:`MIN_SCORE`; 0 keeps
        every region above ``threshold``, as the FROC sweep needs).
    min_contrast : float, optional
        Drop lesions whose visible contrast (``contrast``, Delta E00 of the lesion's mean
        colour against a ring of skin around it) is below this (:data:`MIN_CONTRAST`); None
        keeps every one.
    **proposal_options
        Passed to :func:`lesiontrack.detection.proposals.heatmap_to_lesions` (``min_area``,
        ``split_depth``, ...).

    Returns
    -------
    list of dict, or (list of dict, ndarray)
        Lesion records (``id``, ``bbox`` [x, y, w, h], ``centroid`` [x, y], ``area_px``,
        ``score``, ``contrast``, ``malignancy``, ``label``; with a classifier also ``malignancy_fcn`` and
        ``atypicality``, see :func:`lesiontrack.detection.classifier.grade_lesions`).
    """
    from lesiontrack.detection import skin as skin_module

    if model is None:
        model = load_detector(weights)
    probabilities = predict_heatmap(model, image)
    if isinstance(skin, str) and skin == "auto":
        skin = skin_module.photo_skin(image)
    if skin is None:
        lesions, instances = heatmap_to_lesions(probabilities, threshold=threshold,
                                                return_instances=True, **proposal_options)
    else:
        skin = np.asarray(skin, bool)
        # Off skin P(lesion) is removed before the proposals, so that no lesion region (and no
        # box) runs across a strap or a garment edge; what is left mostly off skin goes.
        probabilities = skin_module.mask_probabilities(probabilities, skin)
        lesions, instances = heatmap_to_lesions(probabilities, threshold=threshold,
                                                return_instances=True, **proposal_options)
        lesions = skin_module.on_skin(lesions, instances, skin)
    lesions = [lesion for lesion in lesions if lesion["score"] >= min_score]
    lesions = visible_lesions(image, lesions, instances, skin=skin, min_contrast=min_contrast)
    if classifier is not None:
        from lesiontrack.detection.classifier import grade_lesions, load_classifier

        if not hasattr(classifier, "predict"):
            classifier = load_classifier(classifier)
        lesions = grade_lesions(image, lesions, classifier)
    return (lesions, probabilities) if return_heatmap else lesions


def malignancy_colour(malignancy):
    """RGB uint8 tuple from green (0, benign) to red (1, malignant)."""
    t = float(np.clip(malignancy, 0.0, 1.0))
    return tuple(int(v) for v in (1 - t) * BENIGN_COLOUR + t * MALIGNANT_COLOUR)


def draw_overlay(image, lesions):
    """The photo with a numbered box per lesion, coloured by malignancy, and a legend.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    lesions : list of dict
        Records with ``id``, ``bbox`` and ``malignancy``.

    Returns
    -------
    ndarray
        uint8 RGB (H, W, 3), a new array.
    """
    overlay = np.ascontiguousarray(image, np.uint8).copy()
    height, width = overlay.shape[:2]
    scale = max(0.35, min(height, width) / 1200)
    thickness = max(1, int(round(2 * scale)))
    for lesion in lesions:
        x, y, w, h = lesion["bbox"]
        colour = malignancy_colour(lesion["malignancy"])
        cv2.rectangle(overlay, (x - 1, y - 1), (x + w, y + h), colour, thickness)
        cv2.putText(overlay, str(lesion["id"]), (x, max(y - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, colour, thickness, cv2.LINE_AA)
    _draw_legend(overlay, scale, thickness)
    return overlay


def _draw_legend(overlay, scale, thickness):
    """A green-to-red bar labelled benign / malignant in the bottom-left corner."""
    height, width = overlay.shape[:2]
    bar_width = max(20, min(int(160 * scale * 2), width - 10))
    bar_height = max(4, int(10 * scale * 2))
    x0, y0 = 5, height - bar_height - int(22 * scale * 2) - 5
    if y0 < 0 or x0 + bar_width > width:  # no room on a very small or narrow photo
        return
    t = np.linspace(0, 1, bar_width)[:, None]
    bar = ((1 - t) * BENIGN_COLOUR + t * MALIGNANT_COLOUR).astype(np.uint8)
    overlay[y0:y0 + bar_height, x0:x0 + bar_width] = bar[None]
    font_scale = 0.8 * scale
    text_y = y0 + bar_height + int(16 * scale * 2)
    cv2.putText(overlay, "benign", (x0, text_y), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                (255, 255, 255), max(1, thickness - 1), cv2.LINE_AA)
    (text_width, _), _ = cv2.getTextSize("malignant", cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    cv2.putText(overlay, "malignant", (x0 + bar_width - text_width, text_y),
                cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), max(1, thickness - 1),
                cv2.LINE_AA)


def heatmap_image(probabilities, *, colormap="inferno"):
    """P(lesion) as a colour-mapped RGB uint8 (H, W, 3) picture (0 dark, 1 bright)."""
    from matplotlib import colormaps

    p_lesion = np.clip(lesion_probability(probabilities), 0.0, 1.0)
    return (colormaps[colormap](p_lesion)[..., :3] * 255 + 0.5).astype(np.uint8)


def detect_files(paths, out_dir, *, weights="default", threshold=0.5, format="json",  # noqa: A002
                 skin_only=True, classifier="default", min_score=MIN_SCORE,
                 min_contrast=MIN_CONTRAST, **proposal_options):
    """Detect lesions on photo files and write the results.

    Every photo is read (and checked) before anything is written, so a bad photo stops the
    run with no output at all; every file is written atomically.

    Per photo ``<stem>_overlay.png`` (numbered boxes, green benign to red malignant) and
    ``<stem>_heatmap.png`` (P(lesion)); with ``format="json"`` also ``<stem>.json``
    (``image``, ``size`` [W, H], ``weights``, ``classifier``, ``threshold``, ``skin_mask``:
    whether lesions were kept to skin and the skin share of the photo, ``lesions``); with
    ``format="coco"`` one ``annotations.json`` (COCO detections with scores, categories
    1 benign and 2 malignant).

    Parameters
    ----------
    paths : sequence of path-like
        Photos (JPEG, PNG, TIFF, ...).
    out_dir : path-like
    weights : "default" or path-like
    threshold : float
    format : {"json", "coco"}
    skin_only : bool
        Keep lesions to the photo's skin (``skin="auto"`` of :func:`detect`); False searches
        every pixel.
    classifier : "default", path-like or None
        Second-stage classifier of :func:`detect`; its file is recorded as ``classifier``
        (path and SHA-256) beside ``weights``.
    min_score, min_contrast : float
        Filters of :func:`detect`, recorded beside ``threshold``.
    **proposal_options
        Passed to :func:`lesiontrack.detection.proposals.heatmap_to_lesions`.

    Returns
    -------
    dict
        Photo path (str) -> list of lesion records.

    Raises
    ------
    InputError
        Naming the photo or weights file that cannot be used.
    """
    if format not in ("json", "coco"):
        raise ValueError(f"format must be 'json' or 'coco', got {format!r}")
    paths = [Path(p) for p in paths]
    stems = [p.stem for p in paths]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise InputError(f"{duplicates[0]}: several photos share this name; outputs would clash")
    sizes = {}
    for path in paths:
        height, width = read_image(path).shape[:2]
        sizes[path] = [width, height]
    from lesiontrack.detection.skin import photo_skin

    model = load_detector(weights)
    weights_info = weights_id(resolve_weights(weights, "detector"))
    classifier_info = None
    if classifier is not None:
        from lesiontrack.detection.classifier import load_classifier

        classifier_info = weights_id(resolve_weights(classifier, "classifier"))
        classifier = load_classifier(classifier)
    out_dir = Path(out_dir)
    results = {}
    coco_images, coco_annotations = [], []
    for image_id, path in enumerate(progress_bar(paths, desc="detect", unit="photo"), start=1):
        image = read_image(path)
        skin = photo_skin(image) if skin_only else None
        lesions, probabilities = detect(image, model=model, threshold=threshold,
                                        return_heatmap=True, skin=skin, classifier=classifier,
                                        min_score=min_score, min_contrast=min_contrast,
                                        **proposal_options)
        skin_info = {"used": skin is not None,
                     "skin_fraction": None if skin is None else round(float(skin.mean()), 4)}
        results[str(path)] = lesions
        write_image(out_dir / f"{path.stem}_overlay.png", draw_overlay(image, lesions))
        write_image(out_dir / f"{path.stem}_heatmap.png", heatmap_image(probabilities))
        if format == "json":
            write_json(out_dir / f"{path.stem}.json", {
                "image": str(path), "size": sizes[path], "weights": weights_info,
                "classifier": classifier_info, "threshold": threshold, "min_score": min_score,
                "min_contrast": min_contrast, "skin_mask": skin_info, "lesions": lesions})
        else:
            coco_images.append({"id": image_id, "file_name": path.name,
                                "width": sizes[path][0], "height": sizes[path][1],
                                "skin_mask": skin_info})
            for lesion in lesions:
                coco_annotations.append({
                    "id": len(coco_annotations) + 1, "image_id": image_id,
                    "category_id": 2 if lesion["label"] == "malignant" else 1,
                    "bbox": lesion["bbox"], "area": lesion["area_px"], "iscrowd": 0,
                    "score": lesion["score"], "malignancy": lesion["malignancy"],
                    **{key: lesion[key] for key in ("contrast", "malignancy_fcn", "atypicality")
                       if key in lesion}})
        log.info("%s: %d lesions", path, len(lesions))
    if format == "coco":
        write_json(out_dir / "annotations.json", {
            "info": {"description": "lesiontrack detections", "weights": weights_info,
                     "classifier": classifier_info, "threshold": threshold,
                     "min_score": min_score, "min_contrast": min_contrast,
                     "skin_only": skin_only},
            "images": coco_images, "annotations": coco_annotations,
            "categories": [{"id": 1, "name": "benign"}, {"id": 2, "name": "malignant"}]})
    return results
