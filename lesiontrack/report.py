"""Visit reports: one self-contained HTML page for a visit or a pair of visits.

:func:`report_html` turns a result dict (the lesions of :func:`lesiontrack.detect`, or the
matches of :func:`lesiontrack.match`, with a few header fields) and the photos into one HTML
page: photos and close-ups embedded as JPEG data URIs, lesion outlines, match lines and scale
bars as inline SVG, CSS inline, no scripts and no reference to anything outside the file, so
that the page can be archived or attached to a record; a print stylesheet keeps rows and
images whole. :func:`write_report` runs detection (and, for two visits, flow and matching) on
photo files and writes ``report.html`` and the ``report.json`` it was built from.

Close-ups of the second visit are resampled into the first visit's frame through the flow
(``image1[p + flow(p)]`` for every pixel ``p`` of the first visit's close-up), so that the two
close-ups of a lesion show the same skin at the same scale and a change of size or colour
shows as such.
"""
from __future__ import annotations

import base64
import datetime
import html
import logging
import math
from pathlib import Path

import cv2
import numpy as np

from synth.io import is_dataset, read_image, read_manifest, write_bytes, write_json

from lesiontrack.imaging import check_image, sample_flow

log = logging.getLogger(__name__)

__all__ = ["report_html", "write_report", "photo_scale", "closeup", "aligned_closeup"]

PHOTO_MAX_WIDTH = 1800   # embedded overview pixels (wider photos are downsized)
DISPLAY_WIDTH = 1120     # CSS px of the overview figures on screen
CLOSEUP_PX = 160         # side of an embedded close-up, pixels (shown at the same CSS size)
CLOSEUP_CONTEXT = 2.5    # close-up side as a multiple of the lesion box's longer side
MIN_CLOSEUP_SIDE = 32    # ... and at least this many photo pixels
JPEG_QUALITY = 85
FILL = (128, 128, 128)   # close-up pixels outside the photo
SCALE_BARS_MM = (0.5, 1, 2, 5, 10, 20, 50)
DASH = "\u2013"
NOTE = ("Decision support, not a diagnosis. The scores come from models trained on synthesized "
        "data; they can miss lesions and flag harmless ones. Every lesion of concern needs a "
        "clinician's examination.")


# --------------------------------------------------------------------------- images


def _data_uri(image, *, quality=JPEG_QUALITY):
    """uint8 RGB (H, W, 3) as a ``data:image/jpeg;base64,...`` URI."""
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR),
                              [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("could not encode a JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.tobytes()).decode("ascii")


def _fit_width(image, width):
    """Downsized (INTER_AREA) to at most ``width`` columns; never enlarged."""
    if image.shape[1] <= width:
        return image
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def closeup_region(bbox):
    """Square close-up region (centre x, centre y, side) around a box [x, y, w, h], pixels.

    The centre is in pixel-centre coordinates (pixel (0, 0) at 0, as ``cv2.remap``).
    """
    x, y, w, h = (float(v) for v in bbox)
    side = max(MIN_CLOSEUP_SIDE, CLOSEUP_CONTEXT * max(w, h))
    return x + (w - 1) / 2.0, y + (h - 1) / 2.0, side


def _grid(region, size):
    """float32 (size, size) x and y coordinates of the output pixels' centres in the photo."""
    cx, cy, side = region
    steps = (np.arange(size, dtype=np.float64) + 0.5) * side / size - side / 2.0
    grid_x, grid_y = np.meshgrid(cx + steps, cy + steps)
    return grid_x.astype(np.float32), grid_y.astype(np.float32)


def _remap(image, map_x, map_y):
    return cv2.remap(np.ascontiguousarray(image), map_x, map_y, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=FILL)


def closeup(image, region, *, size=CLOSEUP_PX):
    """An enlarged square close-up of a photo.

    Parameters
    ----------
    image : ndarray, uint8 (H, W, 3)
    region : (float, float, float)
        Centre x, centre y (pixel-centre coordinates) and side in pixels
        (:func:`closeup_region`); parts outside the photo are grey.
    size : int
        Output side in pixels.

    Returns
    -------
    ndarray, uint8 (size, size, 3)
    """
    return _remap(image, *_grid(region, size))


def aligned_closeup(image1, region, *, flow=None, carried=None, centroid=None, scale=1.0,
                    size=CLOSEUP_PX):
    """A close-up of the second visit resampled into the first visit's frame.

    With ``flow`` every output pixel at first-visit position ``p`` shows ``image1[p +
    flow(p)]``. Without it a similarity stands in for the flow: the close-up is centred on
    ``carried`` (the lesion's centroid carried to the second visit) and scaled by
    ``sqrt(scale)`` (the flow's local area scale), relative to ``centroid``.

    Parameters
    ----------
    image1 : ndarray, uint8 (H1, W1, 3)
    region : (float, float, float)
        Close-up region in the first visit (:func:`closeup_region`).
    flow : ndarray, float32 (H, W, 2), optional
        Forward flow first -> second visit, channel 0 = dx.
    carried, centroid : (float, float), optional
        Needed without ``flow``: (x, y) in the second and first visit.
    scale : float
        Local area scale from the first to the second visit (without ``flow``).
    size : int

    Returns
    -------
    ndarray, uint8 (size, size, 3)
    """
    grid_x, grid_y = _grid(region, size)
    if flow is not None:
        shift = sample_flow(flow, np.stack([grid_x.ravel(), grid_y.ravel()], axis=1))
        shift = shift.reshape(grid_x.shape + (2,)).astype(np.float32)
        return _remap(image1, grid_x + shift[..., 0], grid_y + shift[..., 1])
    if carried is None or centroid is None:
        raise ValueError("aligned_closeup needs flow, or carried and centroid")
    zoom = math.sqrt(max(float(scale), 1e-6))
    map_x = carried[0] + (grid_x - centroid[0]) * zoom
    map_y = carried[1] + (grid_y - centroid[1]) * zoom
    return _remap(image1, map_x.astype(np.float32), map_y.astype(np.float32))


# --------------------------------------------------------------------------- formatting


def _e(value):
    return html.escape(str(value), quote=True)


def _number(value, digits=2):
    """A number with ``digits`` decimals, or an en dash when absent."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    return f"{float(value):.{digits}f}"


def _rgb(colour):
    return "rgb({},{},{})".format(*(int(c) for c in colour))


def _malignancy_colour(value):
    from lesiontrack.detection.detect import malignancy_colour

    return _rgb(malignancy_colour(0.0 if value is None else value))


def _diameter(lesion, mm_per_px):
    """Diameter of the disk of the lesion's area: "4.2 mm (11 px)", or "11 px"."""
    area = lesion.get("area_px")
    if area is None:
        area = float(lesion["bbox"][2]) * float(lesion["bbox"][3]) * math.pi / 4.0
    pixels = math.sqrt(4.0 * float(area) / math.pi)
    if mm_per_px:
        return f"{pixels * mm_per_px:.1f} mm ({pixels:.0f} px)"
    return f"{pixels:.0f} px"


def concern_key(lesion):
    """Sort key, most concerning first: malignancy, then atypicality (absent last), then id."""
    malignancy = lesion.get("malignancy")
    atypicality = lesion.get("atypicality")
    return (-(malignancy if malignancy is not None else -1.0),
            -(atypicality if atypicality is not None else -1.0), lesion.get("id", 0))


def _scale_bar(region, mm_per_px, size):
    """Inline SVG scale bar over a close-up (empty without a scale)."""
    if not mm_per_px:
        return ""
    side_mm = region[2] * mm_per_px
    fitting = [length for length in SCALE_BARS_MM if length <= 0.4 * side_mm]
    length_mm = fitting[-1] if fitting else SCALE_BARS_MM[0]
    length = length_mm / side_mm * size
    x0, y0 = 8.0, size - 10.0
    label = f"{length_mm:g} mm"
    return (f'<svg class="bar" viewBox="0 0 {size} {size}" aria-hidden="true">'
            f'<line x1="{x0}" y1="{y0}" x2="{x0 + length:.1f}" y2="{y0}" class="halo"/>'
            f'<line x1="{x0}" y1="{y0}" x2="{x0 + length:.1f}" y2="{y0}"/>'
            f'<text x="{x0}" y="{y0 - 6}">{label}</text></svg>')


def _closeup_html(image, label, region, mm_per_px):
    size = image.shape[1]
    return (f'<figure class="closeup"><div class="stack"><img src="{_data_uri(image)}" '
            f'width="{size}" height="{size}" alt="{_e(label)}">'
            f'{_scale_bar(region, mm_per_px, size)}</div>'
            f'<figcaption>{_e(label)}</figcaption></figure>')


# --------------------------------------------------------------------------- overview figures


def _display_width(image_width, *, full):
    """CSS width of an overview figure: the full page width, or the photo's own (640 at least)."""
    return DISPLAY_WIDTH if full else min(max(image_width, 640), DISPLAY_WIDTH)


def _photo_figure(image, marks, *, caption, legend, full=False):
    """The photo (downsized) with an SVG overlay in full-resolution photo coordinates."""
    height, width = image.shape[:2]
    shown = _fit_width(image, PHOTO_MAX_WIDTH)
    display = _display_width(width, full=full)
    return (f'<figure class="photo"><div class="stack" style="width:{display}px">'
            f'<img src="{_data_uri(shown)}" width="{shown.shape[1]}" height="{shown.shape[0]}" '
            f'alt="{_e(caption)}"><svg viewBox="0 0 {width} {height}" '
            f'preserveAspectRatio="none" aria-hidden="true">{marks}</svg></div>'
            f'<figcaption>{caption}{legend}</figcaption></figure>')


def _units(image_width, *, full=False):
    """Photo pixels per CSS pixel of an overview figure of that width."""
    return image_width / _display_width(image_width, full=full)


def _outline(lesion, colour, unit, dx=0.0):
    """An ellipse around a lesion's box with its number, in photo coordinates (+ dx)."""
    x, y, w, h = (float(v) for v in lesion["bbox"])
    pad = max(3.0 * unit, 0.25 * max(w, h))
    cx, cy = x + w / 2.0 + dx, y + h / 2.0
    rx, ry = w / 2.0 + pad, h / 2.0 + pad
    shape = f'<ellipse cx="{cx:.1f}" cy="{cy:.1f}" rx="{rx:.1f}" ry="{ry:.1f}" '
    # A light halo under the coloured line keeps it visible on dark and on reddish skin.
    return (f'{shape}class="halo" style="stroke-width:{4 * unit:.2f}"/>'
            f'{shape}style="stroke:{colour};stroke-width:{2 * unit:.2f}"/>'
            f'<text x="{cx + 0.71 * rx + 2 * unit:.1f}" y="{cy - 0.71 * ry - 2 * unit:.1f}" '
            f'style="fill:{colour};font-size:{14 * unit:.1f}px;stroke-width:{3 * unit:.2f}">'
            f'{_e(lesion["id"])}</text>')


def _malignancy_legend():
    """The colour ramp of the outlines, malignancy 0 to 1."""
    ramp = (f"background:linear-gradient(to right,{_malignancy_colour(0.0)},"
            f"{_malignancy_colour(1.0)})")
    return (f'<span class="legend"><span class="ramp" style="{ramp}"></span> malignancy 0 '
            f'{DASH} 1</span>')


def _pair_figure(image0, image1, result):
    """Both visits side by side with a match line per lesion pair (changed in red)."""
    from lesiontrack.tracking.match import CHANGED_COLOUR, GONE_COLOUR, MATCH_COLOUR, NEW_COLOUR

    height = max(image0.shape[0], image1.shape[0])
    gap = max(8, image0.shape[1] // 50)
    offset = image0.shape[1] + gap
    canvas = np.full((height, offset + image1.shape[1], 3), 255, np.uint8)
    canvas[:image0.shape[0], :image0.shape[1]] = image0
    canvas[:image1.shape[0], offset:] = image1
    unit = _units(canvas.shape[1], full=True)
    lesions0 = {lesion["id"]: lesion for lesion in result.get("lesions0", [])}
    lesions1 = {lesion["id"]: lesion for lesion in result.get("lesions1", [])}
    marks = []
    for match in result["matches"]:
        colour = _rgb(CHANGED_COLOUR if match["changed"] else MATCH_COLOUR)
        (x0, y0), (x1, y1) = match["centroid0"], match["centroid1"]
        marks.append(f'<line x1="{x0 + 0.5:.1f}" y1="{y0 + 0.5:.1f}" x2="{x1 + 0.5 + offset:.1f}" '
                     f'y2="{y1 + 0.5:.1f}" style="stroke:{colour};stroke-width:'
                     f'{(2.5 if match["changed"] else 1.2) * unit:.2f}"/>')
        if match["id0"] in lesions0:
            marks.append(_outline(lesions0[match["id0"]], colour, unit))
        if match["id1"] in lesions1:
            marks.append(_outline(lesions1[match["id1"]], colour, unit, dx=offset))
    for lesion in result["gone"]:
        if lesion["id"] in lesions0:
            marks.append(_outline(lesions0[lesion["id"]], _rgb(GONE_COLOUR), unit))
    for lesion in result["new"]:
        if lesion["id"] in lesions1:
            marks.append(_outline(lesions1[lesion["id"]], _rgb(NEW_COLOUR), unit, dx=offset))
    legend = "".join(f'<span class="legend"><span class="swatch" style="background:{_rgb(c)}">'
                     f'</span> {name}</span>' for name, c in (
                         ("matched", MATCH_COLOUR), ("changed", CHANGED_COLOUR),
                         ("gone", GONE_COLOUR), ("new", NEW_COLOUR)))
    return _photo_figure(canvas, "".join(marks),
                         caption="First visit (left) and second visit (right); lesion numbers "
                                 "are those of each visit's detection.", legend=legend,
                         full=True)


# --------------------------------------------------------------------------- page


def _header(result, kind):
    title = result.get("title") or "Skin lesion report"
    names = [Path(str(p)).name for p in result.get("images", [])]
    sizes = result.get("sizes") or []
    rows = [("Date of the run", _date(result.get("created")))]
    for index, name in enumerate(names):
        size = f" ({sizes[index][0]}\u00d7{sizes[index][1]} px)" if index < len(sizes) else ""
        visit = ("Photo" if kind == "visit" else ("First visit", "Second visit")[index])
        rows.append((visit, name + size))
    detector = result.get("detector") or {}
    weights = detector.get("weights")
    if weights:
        rows.append(("Detector weights", _weights_text(weights)))
    if "classifier" in detector:
        rows.append(("Malignancy classifier", _weights_text(detector["classifier"])
                     if detector["classifier"] else "none (the detector's malignancy)"))
    if detector.get("threshold") is not None:
        rows.append(("Lesion threshold", f"P(lesion) \u2265 {detector['threshold']:g}"))
    if kind == "pair":
        tracker = result.get("tracker") or {}
        method = tracker.get("method") or result.get("method") or DASH
        rows.append(("Flow method", str(method)))
        if tracker.get("weights"):
            rows.append(("Tracker weights", _weights_text(tracker["weights"])))
        parameters = result.get("parameters") or {}
        if parameters:
            rows.append(("Change thresholds",
                         f"area ratio beyond \u00d7{parameters['area_change']:g} or "
                         f"1/{parameters['area_change']:g} (corrected for the flow's local "
                         f"scale); colour \u0394E > {parameters['colour_change']:g}"))
            rows.append(("Match gate", f"{parameters['max_distance']:g} of the diagonal "
                                       f"({parameters['gate_px']:g} px)"))
    scale = result.get("mm_per_px")
    source = result.get("scale_source")
    rows.append(("Scale", f"{scale:g} mm per pixel" + (f" ({source})" if source else "")
                 if scale else "unknown: sizes in pixels, no scale bars"))
    table = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return (f'<header><h1>{_e(title)}</h1><table class="meta">{table}</table>'
            f'<p class="note"><strong>Note.</strong> {_e(NOTE)}</p></header>')


def _date(created):
    """An ISO 8601 time as "2026-12-01 16:37 (UTC+01:00)"; a dash when absent."""
    if not created:
        return DASH
    try:
        moment = datetime.datetime.fromisoformat(str(created))
    except ValueError:
        return str(created)
    zone = f" ({moment.tzname()})" if moment.tzinfo else ""
    return moment.strftime("%Y-%m-%d %H:%M") + zone


def _weights_text(weights):
    if isinstance(weights, dict):
        name = Path(str(weights.get("path", ""))).name
        digest = weights.get("sha256")
        return f"{name} (sha256 {digest})" if digest else name
    return str(weights)


def _visit_body(image, result):
    lesions = sorted(result.get("lesions", []), key=concern_key)
    mm_per_px = result.get("mm_per_px")
    unit = _units(image.shape[1])
    marks = "".join(_outline(lesion, _malignancy_colour(lesion.get("malignancy")), unit)
                    for lesion in sorted(lesions, key=concern_key, reverse=True))
    suspicious = sum(1 for lesion in lesions if (lesion.get("malignancy") or 0) >= 0.5)
    figure = _photo_figure(image, marks, caption="Lesions found, numbered, outlined by "
                                                 "malignancy score.", legend=_malignancy_legend())
    rows = []
    for lesion in lesions:
        region = closeup_region(lesion["bbox"])
        picture = _closeup_html(closeup(image, region), f"lesion {lesion['id']}", region, mm_per_px)
        rows.append(
            f'<tr data-id="{_e(lesion["id"])}"><td class="id">{_e(lesion["id"])}</td>'
            f'<td>{picture}</td>'
            f'<td>{_diameter(lesion, mm_per_px)}</td>'
            f'<td>{_number(lesion.get("score"))}</td>'
            f'{_malignancy_cell(lesion)}'
            f'<td>{_number(lesion.get("atypicality"))}</td></tr>')
    table = _table("lesions", ["#", "Close-up", "Diameter", "Lesion score", "Malignancy",
                               "Atypicality"], rows, empty="No lesion found.")
    return (f'<p class="summary">{_count(len(lesions), "lesion")} found; {suspicious} with '
            f'malignancy \u2265 0.5. Sorted by concern (malignancy, then atypicality).</p>'
            f'{figure}<h2>Lesions</h2>{table}')


def _malignancy_cell(lesion):
    value = lesion.get("malignancy")
    return (f'<td><span class="dot" style="background:{_malignancy_colour(value)}"></span>'
            f'{_number(value)}</td>')


def _table(name, headings, rows, *, empty):
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    return (f'<table class="{name}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _pair_key(match, lesions0, lesions1):
    both = [lesions0.get(match["id0"], {}), lesions1.get(match["id1"], {})]
    return (not match["changed"], min(concern_key(lesion)[:2] for lesion in both),
            match["id0"])


def _pair_body(image0, image1, result, flow):
    lesions0 = {lesion["id"]: lesion for lesion in result.get("lesions0", [])}
    lesions1 = {lesion["id"]: lesion for lesion in result.get("lesions1", [])}
    scale = result.get("mm_per_px")
    changed = sum(1 for match in result["matches"] if match["changed"])
    aligned = "through the flow" if flow is not None else \
        "by the match's carried position and scale"
    return (f'<p class="summary">{_count(len(result["matches"]), "lesion")} found at both '
            f'visits ({changed} changed), {len(result["gone"])} gone, {len(result["new"])} '
            f'new.</p>{_pair_figure(image0, image1, result)}'
            f'<h2>Lesions at both visits</h2><p class="hint">Changed lesions first. The '
            f'second-visit close-up is resampled into the first visit\'s frame {aligned}, so '
            f'that both show the same skin at the same scale. Area ratio: second / first visit '
            f'area, corrected for the local scale of the flow. Malignancy and atypicality: '
            f'first \u2192 second visit.</p>'
            f'{_matches_table(image0, image1, result, flow, lesions0, lesions1, scale)}'
            f'<h2>Lesions gone</h2>{_gone_table(image0, image1, result, flow, lesions0, scale)}'
            f'<h2>New lesions</h2>{_new_table(image1, result, lesions1, scale)}')


def _lesion(lesions, entry):
    """The lesion record of a gone or new entry (a small box at its centroid if missing)."""
    x, y = (int(round(v)) for v in entry["centroid"])
    return lesions.get(entry["id"], {"id": entry["id"], "bbox": [x - 4, y - 4, 9, 9]})


def _matches_table(image0, image1, result, flow, lesions0, lesions1, scale):
    rows = []
    for match in sorted(result["matches"], key=lambda m: _pair_key(m, lesions0, lesions1)):
        lesion0 = _lesion(lesions0, {"id": match["id0"], "centroid": match["centroid0"]})
        lesion1 = lesions1.get(match["id1"])
        region = closeup_region(lesion0["bbox"])
        later = aligned_closeup(image1, region, flow=flow, carried=match["carried"],
                                centroid=match["centroid0"], scale=match.get("local_scale", 1.0))
        changes = ", ".join(match.get("changes") or []) or "none"
        rows.append(
            f'<tr data-id0="{_e(match["id0"])}" data-id1="{_e(match["id1"])}"'
            f'{" class=changed" if match["changed"] else ""}>'
            f'<td class="id">{_e(match["id0"])} \u2192 {_e(match["id1"])}</td>'
            f'<td><div class="pair">'
            f'{_closeup_html(closeup(image0, region), "first visit", region, scale)}'
            f'{_closeup_html(later, "second visit, aligned", region, scale)}</div></td>'
            f'<td>{_number(match["area_ratio"])}</td>'
            f'<td>{_number(match["colour_change"], 1)}</td>'
            f'<td class="changes">{_e(changes)}</td>'
            f'<td>{_number(match["confidence"])}</td>'
            f'<td>{_both(lesion0, lesion1, "malignancy")}</td>'
            f'<td>{_both(lesion0, lesion1, "atypicality")}</td></tr>')
    return _table("matches", ["#", "Close-ups (first, second visit)", "Area ratio",
                              "Colour change \u0394E", "Changed", "Match confidence",
                              "Malignancy", "Atypicality"], rows,
                  empty="No lesion found at both visits.")


def _gone_table(image0, image1, result, flow, lesions0, scale):
    rows = []
    for entry in result["gone"]:
        lesion = _lesion(lesions0, entry)
        region = closeup_region(lesion["bbox"])
        first = _closeup_html(closeup(image0, region), "first visit", region, scale)
        if entry.get("out_of_view"):
            later = '<p class="empty">out of view</p>'
        else:
            picture = aligned_closeup(image1, region, flow=flow, carried=entry["carried"],
                                      centroid=entry["centroid"])
            later = _closeup_html(picture, "second visit, aligned", region, scale)
        rows.append(
            f'<tr data-id="{_e(entry["id"])}"><td class="id">{_e(entry["id"])}</td>'
            f'<td><div class="pair">{first}{later}</div></td>'
            f'<td>{_diameter(lesion, scale)}</td>{_malignancy_cell(lesion)}'
            f'<td>{_number(lesion.get("atypicality"))}</td></tr>')
    return _table("gone", ["#", "Close-ups (first, second visit)", "Diameter", "Malignancy",
                           "Atypicality"], rows, empty="None.")


def _new_table(image1, result, lesions1, scale):
    rows = []
    for lesion in sorted((_lesion(lesions1, entry) for entry in result["new"]), key=concern_key):
        region = closeup_region(lesion["bbox"])
        picture = _closeup_html(closeup(image1, region), "second visit", region, scale)
        rows.append(
            f'<tr data-id="{_e(lesion["id"])}"><td class="id">{_e(lesion["id"])}</td>'
            f'<td>{picture}</td><td>{_diameter(lesion, scale)}</td>'
            f'<td>{_number(lesion.get("score"))}</td>{_malignancy_cell(lesion)}'
            f'<td>{_number(lesion.get("atypicality"))}</td></tr>')
    return _table("new", ["#", "Close-up (second visit)", "Diameter", "Lesion score",
                          "Malignancy", "Atypicality"], rows, empty="None.")


def _count(number, noun):
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _both(lesion0, lesion1, key):
    """First and second visit's values, "0.20 \u2192 0.35", or a dash when neither has one."""
    first, second = (_number((lesion or {}).get(key)) for lesion in (lesion0, lesion1))
    return DASH if first == second == DASH else f"{first} \u2192 {second}"


CSS = """
*{box-sizing:border-box;-webkit-print-color-adjust:exact;print-color-adjust:exact}
body{margin:0;background:#f4f4f2;color:#1d1d1b;font:15px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,"DejaVu Sans",sans-serif}
main{max-width:1180px;margin:0 auto;padding:20px 28px 40px;background:#fff}
h1{font-size:26px;margin:0 0 10px}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ccc}
table.meta{border-collapse:collapse;margin:0 0 10px}
table.meta th{text-align:left;font-weight:600;padding:1px 16px 1px 0;color:#555;vertical-align:top}
table.meta td{padding:1px 0}
.note{background:#fff6d6;border:1px solid #e3c04c;padding:8px 12px;margin:10px 0;border-radius:4px}
.summary{font-size:16px;font-weight:600}.hint{color:#555;font-size:13px;margin:4px 0 8px}
figure{margin:0}
figure.photo{margin:12px 0}
figure.photo .stack{max-width:100%}
.stack{position:relative;line-height:0}
.stack img{display:block;width:100%;height:auto}
.stack svg{position:absolute;left:0;top:0;width:100%;height:100%;overflow:visible}
figure.photo ellipse{fill:none}figure.photo ellipse.halo{stroke:#fff;stroke-opacity:.6}
figure.photo line{stroke-linecap:round}
figure.photo text{font-weight:700;paint-order:stroke;stroke:#fff;font-family:sans-serif}
figcaption{font-size:13px;color:#555;line-height:1.4;margin-top:4px}
.legend{margin-left:14px;white-space:nowrap}
.ramp{display:inline-block;width:90px;height:10px;vertical-align:middle}
.swatch,.dot{display:inline-block;width:11px;height:11px;border-radius:50%;vertical-align:middle;
margin-right:5px}
table.lesions,table.matches,table.gone,table.new{border-collapse:collapse;width:100%}
table.lesions th,table.matches th,table.gone th,table.new th{text-align:left;font-size:13px;
color:#444;border-bottom:2px solid #999;padding:4px 8px}
tbody td{border-bottom:1px solid #ddd;padding:6px 8px;vertical-align:middle}
tbody tr:nth-child(even){background:#fafaf8}
tr.changed td.changes{color:#c00000;font-weight:700}
td.id{font-weight:700;font-size:17px;white-space:nowrap}
figure.closeup{display:inline-block;width:160px;margin:0 6px 0 0;vertical-align:top}
figure.closeup figcaption{font-size:11px;margin-top:2px}
.closeup img{image-rendering:auto;border:1px solid #bbb}
.pair{white-space:nowrap}
svg.bar line{stroke:#fff;stroke-width:3}svg.bar line.halo{stroke:#000;stroke-width:6}
svg.bar text{fill:#fff;font:700 12px sans-serif;paint-order:stroke;stroke:#000;stroke-width:3px}
.empty{color:#777;font-style:italic;line-height:1.4}
footer{margin-top:30px;color:#888;font-size:12px}
@page{margin:12mm}
@media print{
body{background:#fff;font-size:10pt}main{max-width:none;padding:0}
tr,figure,.note,table.meta{break-inside:avoid;page-break-inside:avoid}
thead{display:table-header-group}h2{break-after:avoid;page-break-after:avoid}
figure.photo .stack{width:100%!important}
figure.closeup{width:118px}.closeup img{width:118px;height:118px}tbody td{padding:3px 6px}
}
"""


def report_html(result, images, *, flow=None) -> str:
    """The report page of one visit or of two visits, as one self-contained HTML string.

    Parameters
    ----------
    result : dict
        One visit: ``lesions`` (records of :func:`lesiontrack.detect`: ``id``, ``bbox``
        [x, y, w, h], ``area_px``, ``score``, ``malignancy``, optional ``atypicality``).
        Two visits: the dict of :func:`lesiontrack.match` (``matches``, ``gone``, ``new``,
        ``lesions0``, ``lesions1``, ``parameters``). Optional header fields: ``title``,
        ``created`` (date of the run), ``images`` (photo paths), ``sizes`` ([W, H] each),
        ``mm_per_px`` and ``scale_source``, ``detector`` ({``weights``, ``threshold``}),
        ``tracker`` ({``method``, ``weights``}), as :func:`write_report` records them.
    images : sequence of ndarray
        The photo (one visit) or both photos (two visits), uint8 RGB (H, W, 3).
    flow : ndarray, float32 (H, W, 2), optional
        Forward flow first -> second visit, used to align the second visit's close-ups;
        without it they are aligned by each match's carried centroid and local scale.

    Returns
    -------
    str
        The HTML page: images as JPEG data URIs, no scripts, nothing outside the file.
    """
    images = [check_image(image, f"image{index}", min_side=1) for index, image in enumerate(images)]
    kind = "pair" if "matches" in result else "visit"
    if len(images) != (2 if kind == "pair" else 1):
        raise ValueError(f"a {kind} report needs {2 if kind == 'pair' else 1} images, "
                         f"got {len(images)}")
    if flow is not None and np.shape(flow) != images[0].shape[:2] + (2,):
        raise ValueError(f"flow shape {np.shape(flow)} does not match the first photo "
                         f"{images[0].shape[:2]} + (2,)")
    body = _visit_body(images[0], result) if kind == "visit" else _pair_body(*images, result, flow)
    from lesiontrack import __version__

    title = result.get("title") or "Skin lesion report"
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<title>{_e(title)}</title><style>{CSS}</style></head><body><main>'
            f'{_header(result, kind)}{body}'
            f'<footer>lesiontrack {_e(__version__)}. {_e(NOTE)}</footer></main></body></html>\n')


# --------------------------------------------------------------------------- files


def photo_scale(path):
    """The known scale of a photo file, or (None, None).

    Known for a photo of a synthesized dataset (``images/ID.jpg`` or ``pairs/ID_t1.jpg``: the
    sample's ``body.mm_per_px`` in its manifest) and for a photo listed in a ``bodies.csv``
    beside it (the body library's layout).

    Returns
    -------
    (float or None, str or None)
        Millimetres per pixel and where it came from ("dataset manifest", "bodies.csv").
    """
    path = Path(path).resolve()
    root = path.parent.parent
    if is_dataset(root):
        for record in read_manifest(root):
            files = [record.get("image"), (record.get("pair") or {}).get("image")]
            if any(name and (root / name).resolve() == path for name in files):
                scale = (record.get("body") or {}).get("mm_per_px")
                if scale:
                    return float(scale), "dataset manifest"
    if (path.parent / "bodies.csv").is_file():
        from synth.bodies import read_body_library

        for body in read_body_library(path.parent, mm_per_px=math.nan).records:
            if Path(body.image_path).resolve() == path and math.isfinite(body.mm_per_px):
                return float(body.mm_per_px), "bodies.csv"
    return None, None


def write_report(photos, out_dir, *, title=None, mm_per_px=None, detector_weights="default",
                 classifier="default", tracker_weights="default", method="net",
                 threshold=0.5) -> dict:
    """Detect (and for two photos, match) lesions and write the report with its JSON.

    Every photo and weights file is read and checked before anything is written; both files
    are written atomically: ``<out_dir>/report.json`` (the dict returned) and
    ``<out_dir>/report.html`` (:func:`report_html` of it).

    Parameters
    ----------
    photos : sequence of path-like
        One photo (one visit) or two (first and second visit).
    out_dir : path-like
    title : str, optional
        Shown at the top (a patient or body-site label, for example).
    mm_per_px : float, optional
        Scale of the photos; default :func:`photo_scale` of the first photo, else unknown
        (sizes in pixels, no scale bars).
    detector_weights, tracker_weights : "default" or path-like
        Tracker weights are used for ``method="net"`` only.
    classifier : "default", path-like or None
        Second-stage malignancy classifier of :func:`lesiontrack.detect` (None: the FCN's
        malignancy).
    method : {"net", "deepflow", "dis", "siftflow", "dsp"}
        Flow method for two photos.
    threshold : float
        Detector P(lesion) threshold.

    Returns
    -------
    dict
        The report's data: header fields (``title``, ``created``, ``images``, ``sizes``,
        ``mm_per_px``, ``scale_source``, ``detector``, for two photos ``tracker``) with
        ``lesions`` (one photo) or the fields of :func:`lesiontrack.match`.

    Raises
    ------
    InputError
        Naming a photo or weights file that cannot be used.
    """
    from lesiontrack.detection.detect import detect, load_detector
    from lesiontrack.model_cache import resolve_weights, weights_id

    photos = [Path(p) for p in photos]
    if len(photos) not in (1, 2):
        raise ValueError(f"a report takes one or two photos, got {len(photos)}")
    if mm_per_px is not None and not (math.isfinite(mm_per_px) and mm_per_px > 0):
        raise ValueError(f"mm_per_px must be a positive number, got {mm_per_px}")
    images = [read_image(path) for path in photos]
    source = "given"
    if mm_per_px is None:
        mm_per_px, source = photo_scale(photos[0])
    detector_path = resolve_weights(detector_weights, "detector")
    classifier_path = None if classifier is None else resolve_weights(classifier, "classifier")
    tracker_path = (resolve_weights(tracker_weights, "tracker")
                    if len(photos) == 2 and method == "net" else None)
    result = {
        "title": title,
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "images": [str(path) for path in photos],
        "sizes": [[image.shape[1], image.shape[0]] for image in images],
        "mm_per_px": mm_per_px, "scale_source": source,
        "detector": {"weights": weights_id(detector_path), "threshold": threshold,
                     "classifier": weights_id(classifier_path) if classifier_path else None},
    }
    model = load_detector(detector_path)
    lesions = [detect(image, model=model, threshold=threshold, classifier=classifier_path)
               for image in images]
    flow = None
    if len(photos) == 1:
        result["lesions"] = lesions[0]
    else:
        from lesiontrack.tracking.flow import estimate_flow
        from lesiontrack.tracking.match import match_lesions

        options = {"weights": tracker_path} if method == "net" else {}
        flow = estimate_flow(images[0], images[1], method=method, **options)
        matched = match_lesions(images[0], images[1], flow=flow, lesions0=lesions[0],
                                lesions1=lesions[1])
        matched["method"] = method
        result["tracker"] = {"method": method,
                             "weights": weights_id(tracker_path) if tracker_path else None}
        result.update(matched)
    page = report_html(result, images, flow=flow)
    out_dir = Path(out_dir)
    write_json(out_dir / "report.json", result)
    write_bytes(out_dir / "report.html", page.encode("utf-8"))
    log.info("report of %d lesions in %s (%d kB)", sum(map(len, lesions)), out_dir,
             len(page) // 1024)
    return result
