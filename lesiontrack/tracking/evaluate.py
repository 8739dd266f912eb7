"""Tracking evaluation: dense correspondence and lesion matching on pairs with known truth.

Li, Esteva et al. 2016 (fig. 6) compare dense correspondence methods by the percentage of
correct keypoints (PCK, :func:`lesiontrack.metrics.pck_curve`): a keypoint carried from t0 to
t1 by a method's flow is correct when it lands within alpha x the image diagonal of its true
position. Per method, :func:`evaluate_tracking` reports

* PCK at each alpha, pooled over every keypoint of every pair;
* the mean end-point error (:mod:`lesiontrack.metrics`), per pair over the valid pixels of the
  true flow when there is one (synthesized and stereo pairs), otherwise over the keypoints
  (real pairs), then averaged over the pairs;
* "match, nearest": the fraction of t0 lesion centres whose carried point is nearest to the
  same lesion's t1 centre (:func:`lesiontrack.metrics.lesion_match_accuracy`);
* "match, Hungarian": :func:`lesiontrack.tracking.match.match_lesions` given the *true*
  lesions of both visits and the method's flow; fraction of the lesions present in both
  visits given the right partner (synthesized pairs);
* end to end, as ``lesiontrack match`` runs (synthesized pairs, whose instance maps know every
  lesion's identity): the detector on both photos, each detection assigned to a true lesion
  (its centroid inside the lesion's box, :func:`lesiontrack.metrics.match_detections`), then
  ``match_lesions`` on the detections with the method's flow. *Precision*: of the matches
  that involve a lesion detected in both visits, the fraction made between the two
  detections of that same lesion. *Coverage*: true lesions given their right partner / all
  true lesions present in both visits;
* seconds of flow per pair.

Pairs come from :mod:`lesiontrack.tracking.pairs`: a synthesized dataset, a folder of real
pairs with ``keypoints.csv``, and optionally the Middlebury motorcycle stereo pair.

Method ``"true"`` is the pair's own true flow (pairs with a dense truth only): a check of the
evaluation itself, which gives PCK 1 and EPE 0.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from lesiontrack import metrics, plots
from lesiontrack.tracking.flow import METHODS, estimate_flow
from lesiontrack.tracking.pairs import both_visits, lesions_from_instances, read_pairs, stereo_pair
from synth.io import atomic_path, write_json
from synth.progress import progress_bar

log = logging.getLogger(__name__)

ALPHAS = (0.01, 0.02, 0.05, 0.1)
TRUE_FLOW = "true"
EVALUATION_METHODS = METHODS + (TRUE_FLOW,)
STEREO_NAME = "stereo_motorcycle (out of domain)"


# --------------------------------------------------------------------------- lesion identity


def lesion_identities(detections, instances) -> dict:
    """The true lesion each detection found: detection id -> instance id (0 for none).

    A detection finds a lesion when its centroid falls inside the lesion's box, one detection
    per lesion, highest score first (:func:`lesiontrack.metrics.match_detections`, the rule of
    the detection evaluation); the others find none.
    """
    truth = lesions_from_instances(instances)
    centroids = [d["centroid"] for d in detections]
    scores = [d.get("score", 1.0) for d in detections]
    to_true, _, _ = metrics.match_detections(centroids, [t["bbox"] for t in truth],
                                             scores=scores)
    return {d["id"]: (truth[k]["id"] if k >= 0 else 0) for d, k in zip(detections, to_true)}


def end_to_end_counts(matches, identity0, identity1, common) -> dict:
    """Counts behind the end-to-end precision and coverage of one pair.

    Parameters
    ----------
    matches : list of dict
        ``match_lesions(...)["matches"]`` (``id0``, ``id1`` detection ids).
    identity0, identity1 : dict
        Detection id -> true lesion id (0 for none) at t0 and t1 (:func:`lesion_identities`).
    common : set of int
        True lesions present in both visits (:func:`lesiontrack.tracking.pairs.both_visits`).

    Returns
    -------
    dict
        ``lesions`` (present in both visits), ``detected`` (of those, detected in both),
        ``matches`` (matches with a t0 or t1 detection of a lesion detected in both),
        ``right`` (of those, between the two detections of the same lesion), ``tracked``
        (true lesions of both visits given their right partner).
    """
    common = set(common)
    detected = (set(identity0.values()) & set(identity1.values()) & common) - {0}
    considered = right = 0
    tracked = set()
    for match in matches:
        lesion0, lesion1 = identity0.get(match["id0"], 0), identity1.get(match["id1"], 0)
        if lesion0 in detected or lesion1 in detected:
            considered += 1
            right += lesion0 == lesion1
        if lesion0 and lesion0 == lesion1 and lesion0 in common:
            tracked.add(lesion0)
    return {"lesions": len(common), "detected": len(detected), "matches": considered,
            "right": int(right), "tracked": len(tracked)}


# --------------------------------------------------------------------------- evaluation


class _Detections:
    """Detector output per pair and visit, computed once and shared by every method."""

    def __init__(self, weights, threshold):
        self.weights, self.threshold, self.cache, self.model = weights, threshold, {}, None

    def __call__(self, pair):
        if pair.name not in self.cache:
            from lesiontrack.detection.detect import detect, load_detector

            if self.model is None:
                self.model = load_detector(self.weights)
            # Grading does not change which lesions are found: no classifier here.
            found = [detect(image, model=self.model, threshold=self.threshold,
                            classifier=None) for image in (pair.image0, pair.image1)]
            identities = [lesion_identities(found[0], pair.instances0),
                          lesion_identities(found[1], pair.instances1)]
            self.cache[pair.name] = found, identities
        return self.cache[pair.name]


def _flow(method, pair, options):
    """The method's flow for a pair (the true flow for method "true")."""
    if method == TRUE_FLOW:
        if pair.flow is None:
            raise ValueError("no dense true flow for this pair")
        return np.asarray(pair.flow, np.float32)
    return estimate_flow(pair.image0, pair.image1, method=method, **options.get(method, {}))


def evaluate_pairs(pairs, methods, *, alphas=ALPHAS, options=None, detector_weights=None,
                   threshold=0.5, description="pairs") -> dict:
    """Run every method on every pair and score it.

    Parameters
    ----------
    pairs : list of TrackingPair
    methods : sequence of str
        Names from :data:`EVALUATION_METHODS`.
    alphas : sequence of float
        PCK tolerances as fractions of the image diagonal.
    options : dict, optional
        method -> keyword options of :func:`lesiontrack.tracking.flow.estimate_flow`.
    detector_weights : "default", path-like or None
        Detector of the end-to-end figures (pairs with instance maps); None skips them.
    threshold : float
        Detector P(lesion) threshold (as ``lesiontrack match``).
    description : str
        Label of the progress bar.

    Returns
    -------
    dict
        method -> figures (``pck`` alpha -> value, ``mean_epe``, ``epe_over``,
        ``lesion_match_accuracy``, ``match_accuracy``, ``end_to_end``, ``seconds_per_pair``,
        ``failures``, ...) or {``skipped``: reason}. ``_errors`` holds float (N,) keypoint
        errors over the diagonal for the plot.
    """
    options = options or {}
    detections = _Detections(detector_weights, threshold) if detector_weights else None
    state = {method: _new_state() for method in methods}
    with progress_bar(total=len(pairs) * len(methods), desc=description, unit="run") as progress:
        for pair in pairs:
            for method in methods:
                progress.update()
                _evaluate_one(method, pair, state[method], options=options,
                              detections=detections)
    return {method: _summary(entry, alphas) for method, entry in state.items()}


def _new_state():
    return {"errors": [], "diagonals": [], "epe": [], "epe_over": set(), "nearest": [],
            "hungarian": [], "end_to_end": [], "seconds": [], "failures": [], "skipped": None}


def _evaluate_one(method, pair, entry, *, options, detections):
    """Score one method on one pair into ``entry``; a failure is recorded, never raised."""
    if entry["skipped"]:
        return
    start = time.perf_counter()
    try:
        flow = _flow(method, pair, options)
    except Exception as error:  # reported, never fatal: the other methods go on
        message = f"{type(error).__name__}: {error}"
        if method == "net" and not entry["seconds"]:
            entry["skipped"] = f"tracker unavailable ({message})"
            log.warning("method net skipped: %s", entry["skipped"])
        elif method == TRUE_FLOW:
            entry["skipped"] = "no dense true flow"
        else:
            entry["failures"].append({"pair": pair.name, "error": message})
            log.warning("%s failed on %s: %s", method, pair.name, message)
        return
    entry["seconds"].append(time.perf_counter() - start)
    carried = metrics.carry_points(flow, pair.points0)
    errors = metrics.endpoint_errors(carried, pair.points1)
    entry["errors"].append(errors)
    entry["diagonals"].append(np.full(errors.size, math.hypot(*pair.image0.shape[:2])))
    if pair.flow is not None:
        entry["epe"].append(metrics.endpoint_error(flow, pair.flow, pair.valid))
        entry["epe_over"].add("valid pixels of the true flow")
    elif errors.size:
        entry["epe"].append(float(errors.mean()))
        entry["epe_over"].add("keypoints")
    lesion = pair.lesion
    if lesion.any() and pair.centres1:
        accuracy = metrics.lesion_match_accuracy(carried[lesion], pair.instance[lesion],
                                                 pair.centres1)
        entry["nearest"].append((accuracy * lesion.sum(), lesion.sum()))
    if pair.instances0 is not None:
        from lesiontrack.tracking.match import match_lesions

        common = both_visits(pair)
        truth = match_lesions(pair.image0, pair.image1, flow=flow,
                              lesions0=lesions_from_instances(pair.instances0),
                              lesions1=lesions_from_instances(pair.instances1))
        right = sum(1 for m in truth["matches"] if m["id0"] == m["id1"] and m["id0"] in common)
        entry["hungarian"].append((right, len(common)))
        if detections is not None:
            (found0, found1), (identity0, identity1) = detections(pair)
            result = match_lesions(pair.image0, pair.image1, flow=flow, lesions0=found0,
                                   lesions1=found1)
            entry["end_to_end"].append(end_to_end_counts(result["matches"], identity0,
                                                         identity1, common))


def _ratio(numerator, denominator):
    return _number(numerator / denominator) if denominator else None


def _summary(entry, alphas):
    """Pooled figures of one method (see :func:`evaluate_pairs`)."""
    if entry["skipped"]:
        return {"skipped": entry["skipped"]}
    errors = np.concatenate(entry["errors"]) if entry["errors"] else np.zeros(0)
    diagonals = np.concatenate(entry["diagonals"]) if entry["diagonals"] else np.zeros(0)
    curve = metrics.correct_fraction(errors, alphas=alphas, diagonal=diagonals)
    nearest = np.array(entry["nearest"], np.float64).reshape(-1, 2).sum(axis=0)
    hungarian = np.array(entry["hungarian"], np.float64).reshape(-1, 2).sum(axis=0)
    end_to_end = None
    if entry["end_to_end"]:
        counts = {key: sum(c[key] for c in entry["end_to_end"]) for key in entry["end_to_end"][0]}
        end_to_end = {"precision": _ratio(counts["right"], counts["matches"]),
                      "coverage": _ratio(counts["tracked"], counts["lesions"]), **counts}
    return {
        "pairs": len(entry["seconds"]),
        "keypoints": int(errors.size),
        "pck": {f"{a:g}": _number(v) for a, v in zip(alphas, curve)},
        "mean_epe": _number(np.mean(entry["epe"])) if entry["epe"] else None,
        "epe_over": " and ".join(sorted(entry["epe_over"])) or None,
        "lesion_match_accuracy": _ratio(nearest[0], nearest[1]),
        "lesions": int(nearest[1]),
        "match_accuracy": _ratio(hungarian[0], hungarian[1]),
        "end_to_end": end_to_end,
        "seconds_per_pair": _number(np.mean(entry["seconds"])) if entry["seconds"] else None,
        "failures": entry["failures"],
        "_errors": errors / np.maximum(diagonals, 1e-9),
    }


def _number(value):
    value = float(value)
    return None if not math.isfinite(value) else round(value, 4)


# --------------------------------------------------------------------------- outputs


def report_markdown(report) -> str:
    """``report.md``: one table per set of pairs."""
    alphas = report["alphas"]
    lines = ["# Tracking evaluation", ""]
    for name, section in report["sets"].items():
        lines += [f"## {name} ({section['pairs']} pairs)", "",
                  "| method | " + " | ".join(f"PCK@{a:g}" for a in alphas)
                  + " | EPE (px) | match, nearest | match, Hungarian | end-to-end precision "
                  "| end-to-end coverage | s/pair | failures |",
                  "|---" * (len(alphas) + 8) + "|"]
        notes = set()
        for method, result in section["methods"].items():
            if "skipped" in result:
                lines.append(f"| {method} | skipped: {result['skipped']} |")
                continue
            end_to_end = result["end_to_end"] or {}
            cells = [_cell(result["pck"][f"{a:g}"]) for a in alphas]
            cells += [_cell(result["mean_epe"], 1), _cell(result["lesion_match_accuracy"]),
                      _cell(result["match_accuracy"]), _cell(end_to_end.get("precision")),
                      _cell(end_to_end.get("coverage")), _cell(result["seconds_per_pair"], 2),
                      str(len(result["failures"]))]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
            if result["epe_over"]:
                notes.add(f"EPE over the {result['epe_over']}.")
            if end_to_end:
                notes.add(f"End to end: {end_to_end['lesions']} true lesions in both visits, "
                          f"{end_to_end['detected']} of them detected in both (detector "
                          f"threshold {report['threshold']:g}).")
        lines += [""] + sorted(notes) + [""] if notes else [""]
    return "\n".join(lines)


def _cell(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def _curves(section, grid):
    """method -> (grid, PCK on grid) for the plot."""
    return {method: (grid, [float(np.mean(result["_errors"] <= a)) for a in grid])
            for method, result in section["methods"].items()
            if "skipped" not in result and result["keypoints"]}


def evaluate_tracking(source, out_dir, *, methods=("net", "siftflow", "dsp", "deepflow", "dis"),
                      split="test", limit=None, alphas=ALPHAS, n_skin=100, seed=0,
                      stereo=False, weights="default", max_diagonal=None,
                      detector_weights="default", threshold=0.5, log_axis=True) -> dict:
    """Evaluate dense correspondence methods and write ``report.md``, ``report.json``, ``pck.png``.

    Parameters
    ----------
    source : path-like
        Synthesized dataset, or folder of real pairs (see the module docstring).
    out_dir : path-like
        Report folder (created).
    methods : sequence of str
        From :data:`EVALUATION_METHODS`.
    split : str
        Split of a synthesized dataset.
    limit : int, optional
        Evaluate the first ``limit`` pairs.
    alphas : sequence of float
        PCK tolerances (fractions of the diagonal).
    n_skin : int
        Random skin keypoints per synthesized pair (at least 200 points on the stereo pair).
    seed : int
        Seeds the keypoint sampling.
    stereo : bool
        Add the Middlebury motorcycle stereo pair as a second set.
    weights : "default" or path-like
        Tracker weights (method ``net``).
    max_diagonal : float, optional
        Working diagonal of method ``net`` (:func:`lesiontrack.tracking.infer.predict_flow`;
        default the tracker variant's own, :data:`lesiontrack.tracking.infer.WORKING_DIAGONAL`).
    detector_weights : "default", path-like or None
        Detector of the end-to-end figures; None skips them.
    threshold : float
        Detector P(lesion) threshold.
    log_axis : bool
        Logarithmic alpha axis in ``pck.png``.

    Returns
    -------
    dict
        The content of ``report.json``: ``alphas``, ``methods``, ``seed``, ``split``,
        ``threshold``, ``sets`` (name -> {``pairs``, ``methods``: method -> figures}).
    """
    methods = list(methods)
    unknown = [m for m in methods if m not in EVALUATION_METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown methods {', '.join(unknown) or '(none given)'}; choose from "
                         f"{', '.join(EVALUATION_METHODS)}")
    alphas = [float(a) for a in alphas]
    rng = np.random.default_rng(seed)
    sets = {str(source): (read_pairs(source, split=split, limit=limit, rng=rng, n_skin=n_skin),
                          "pairs")}
    if stereo:
        sets[STEREO_NAME] = ([stereo_pair(rng=rng, n_points=max(n_skin, 200))], "stereo")
    options = {"net": {"weights": weights}}
    if max_diagonal is not None:
        options["net"]["max_diagonal"] = float(max_diagonal)
    report = {"source": str(source), "alphas": alphas, "methods": methods, "seed": seed,
              "split": split, "threshold": threshold, "max_diagonal": max_diagonal, "sets": {}}
    for name, (pairs, description) in sets.items():
        report["sets"][name] = {"pairs": len(pairs), "methods": evaluate_pairs(
            pairs, methods, alphas=alphas, options=options, detector_weights=detector_weights,
            threshold=threshold, description=description)}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = np.geomspace(0.005, 0.2, 60) if log_axis else np.linspace(0.005, 0.2, 60)
    plots.plot_pck_sets({name: _curves(section, grid) for name, section in report["sets"].items()},
                        out_dir / "pck.png", log_axis=log_axis)
    for section in report["sets"].values():  # the per-keypoint errors only feed the plot
        for result in section["methods"].values():
            result.pop("_errors", None)
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(report_markdown(report) + "\n")
    write_json(out_dir / "report.json", report)
    return report
