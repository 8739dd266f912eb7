"""Tests of the visit report: HTML builder, close-ups, scale lookup, browser rendering."""
import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from lesiontrack.report import (DASH, aligned_closeup, closeup, closeup_region, photo_scale,
                                report_html)

LESIONS = [
    {"id": 1, "bbox": [20, 30, 10, 10], "centroid": [24.5, 34.5], "area_px": 78, "score": 0.91,
     "malignancy": 0.2, "label": "benign"},
    {"id": 2, "bbox": [80, 50, 16, 14], "centroid": [87.5, 56.5], "area_px": 170, "score": 0.66,
     "malignancy": 0.83, "label": "malignant", "atypicality": 0.4},
    {"id": 3, "bbox": [120, 80, 12, 12], "centroid": [125.5, 85.5], "area_px": 110,
     "score": 0.75, "malignancy": 0.83, "label": "malignant", "atypicality": 0.7},
]


class _Page(HTMLParser):
    """Images, references, scripts and the body rows of every table of an HTML page."""

    def __init__(self, text):
        super().__init__()
        self.images, self.references, self.scripts = [], [], 0
        self.tables, self._table, self._row, self._cell = {}, None, None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href", "xlink:href", "srcset", "action", "poster"):
            if name in attrs:
                self.references.append(attrs[name])
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag in ("script", "link", "iframe", "object", "embed"):
            self.scripts += 1
        elif tag == "table":
            self._table = self.tables.setdefault(attrs.get("class", ""), [])
        elif tag == "tr" and self._table is not None:
            self._row = {"attrs": attrs, "cells": []}
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row["cells"].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row["cells"]:
                self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _photo(width=160, height=120, *, discs=(), seed=0):
    """Skin-coloured noise with dark discs (cx, cy, radius), uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal([205, 165, 145], 6, (height, width, 3)), 0, 255).astype(np.uint8)
    for cx, cy, radius in discs:
        cv2.circle(image, (int(cx), int(cy)), int(radius), (90, 55, 45), -1)
    return image


def _decode(uri):
    assert uri.startswith("data:image/jpeg;base64,")
    data = np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def test_visit_report_has_a_row_per_lesion_sorted_by_concern():
    image = _photo(discs=[(25, 35, 5), (88, 57, 7), (126, 86, 6)])
    page = _Page(report_html({"lesions": LESIONS, "mm_per_px": 0.5}, [image]))
    rows = page.tables["lesions"]
    # Equal malignancy: the higher atypicality first.
    assert [row["attrs"]["data-id"] for row in rows] == ["3", "2", "1"]
    by_id = {row["attrs"]["data-id"]: row["cells"] for row in rows}
    for lesion in LESIONS:
        number, _, diameter, score, malignancy, atypicality = by_id[str(lesion["id"])]
        assert number == str(lesion["id"])
        assert score == f"{lesion['score']:.2f}"
        assert malignancy == f"{lesion['malignancy']:.2f}"
        expected = lesion.get("atypicality")
        assert atypicality == (DASH if expected is None else f"{expected:.2f}")
    # Disk of 78 px: diameter 9.97 px, 4.98 mm at 0.5 mm per pixel.
    assert by_id["1"][2] == "5.0 mm (10 px)"


def test_report_is_self_contained():
    image = _photo(discs=[(25, 35, 5), (88, 57, 7), (126, 86, 6)])
    text = report_html({"lesions": LESIONS, "title": "Back <left>", "mm_per_px": 0.4}, [image])
    page = _Page(text)
    assert page.scripts == 0
    assert all(reference.startswith("data:image/jpeg;base64,") for reference in page.references)
    for marker in ("http", "file:", "url(", "@import", "<script", "<link"):
        assert marker not in text
    assert "Back &lt;left&gt;" in text
    photo, *closeups = [_decode(uri) for uri in page.images]
    assert photo.shape == image.shape
    assert len(closeups) == len(LESIONS)
    assert all(picture.shape == (160, 160, 3) for picture in closeups)
    assert "not a diagnosis" in text


def test_scale_bars_only_with_a_known_scale():
    image = _photo()
    with_scale = report_html({"lesions": LESIONS, "mm_per_px": 0.4}, [image])
    without = report_html({"lesions": LESIONS}, [image])
    assert with_scale.count('class="bar"') == len(LESIONS)
    assert without.count('class="bar"') == 0
    assert "unknown: sizes in pixels" in without
    cells = {row["attrs"]["data-id"]: row["cells"] for row in _Page(without).tables["lesions"]}
    assert cells["1"][2] == "10 px"


def test_empty_visit_report():
    page = _Page(report_html({"lesions": []}, [_photo()]))
    assert "lesions" not in page.tables
    assert len(page.images) == 1


def _pair(shifted_pair):
    """A textured pair shifted by (6, -4) with four lesions: same, grown, gone, new."""
    image0, image1 = shifted_pair(size=96, shift=(6, -4))
    image0, image1 = image0.copy(), image1.copy()
    dx, dy = 6, -4
    for image, shift, discs in ((image0, (0, 0), [(25, 30, 5), (65, 35, 5), (30, 70, 5)]),
                                (image1, (dx, dy), [(25, 30, 5), (65, 35, 9), (75, 78, 5)])):
        for cx, cy, radius in discs:
            cv2.circle(image, (cx + shift[0], cy + shift[1]), radius, (60, 30, 30), -1)

    def lesion(lesion_id, cx, cy, radius, malignancy):
        return {"id": lesion_id, "bbox": [cx - radius, cy - radius, 2 * radius + 1, 2 * radius + 1],
                "centroid": [float(cx), float(cy)], "area_px": int(np.pi * radius ** 2),
                "score": 0.8, "malignancy": malignancy, "label": "benign"}

    lesions0 = [lesion(1, 25, 30, 5, 0.1), lesion(2, 65, 35, 5, 0.3), lesion(3, 30, 70, 5, 0.2)]
    lesions1 = [lesion(1, 25 + dx, 30 + dy, 5, 0.1), lesion(2, 65 + dx, 35 + dy, 9, 0.6),
                lesion(4, 75 + dx, 78 + dy, 5, 0.4)]
    flow = np.zeros(image0.shape[:2] + (2,), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return image0, image1, flow, lesions0, lesions1


def test_pair_report_rows(shifted_pair):
    from lesiontrack.tracking.match import match_lesions

    image0, image1, flow, lesions0, lesions1 = _pair(shifted_pair)
    result = match_lesions(image0, image1, flow=flow, lesions0=lesions0, lesions1=lesions1)
    assert [(m["id0"], m["id1"], m["changed"]) for m in result["matches"]] == [
        (1, 1, False), (2, 2, True)]
    assert [g["id"] for g in result["gone"]] == [3] and [n["id"] for n in result["new"]] == [4]
    # Numbers come from the JSON-compatible dict, so round-trip it first.
    result = json.loads(json.dumps(result))
    page = _Page(report_html(result, [image0, image1], flow=flow))
    matches = page.tables["matches"]
    assert [row["attrs"]["data-id0"] for row in matches] == ["2", "1"]  # changed first
    assert matches[0]["attrs"]["class"] == "changed"
    by_id = {int(row["attrs"]["data-id0"]): row["cells"] for row in matches}
    for match in result["matches"]:
        _, _, ratio, colour, changes, confidence, malignancy, _ = by_id[match["id0"]]
        assert ratio == f"{match['area_ratio']:.2f}"
        assert colour == f"{match['colour_change']:.1f}"
        assert confidence == f"{match['confidence']:.2f}"
        assert changes == (", ".join(match["changes"]) or "none")
    assert by_id[2][6] == "0.30 \u2192 0.60"
    assert [row["attrs"]["data-id"] for row in page.tables["gone"]] == ["3"]
    assert [row["attrs"]["data-id"] for row in page.tables["new"]] == ["4"]
    # Pair figure, two close-ups per match and per gone lesion, one per new lesion.
    assert len(page.images) == 1 + 2 * 2 + 2 + 1


def test_pair_report_header(shifted_pair):
    from lesiontrack.tracking.match import match_lesions

    image0, image1, flow, lesions0, lesions1 = _pair(shifted_pair)
    result = match_lesions(image0, image1, flow=flow, lesions0=lesions0, lesions1=lesions1)
    result.update(title="Back", created="2026-12-01T09:30:00+01:00",
                  images=["/data/patient/visit1.jpg", "/data/patient/visit2.jpg"],
                  sizes=[[96, 96], [96, 96]], mm_per_px=0.4, scale_source="given",
                  detector={"weights": {"path": "/w/detector.keras", "sha256": "abc123"},
                            "threshold": 0.45, "classifier": None},
                  tracker={"method": "dis", "weights": None})
    text = report_html(result, [image0, image1], flow=flow)
    meta = dict(re.findall(r"<tr><th>([^<]*)</th><td>([^<]*)</td></tr>", text))
    assert meta["Date of the run"] == "2026-12-01 09:30 (UTC+01:00)"
    assert meta["First visit"] == "visit1.jpg (96\u00d796 px)"
    assert meta["Second visit"] == "visit2.jpg (96\u00d796 px)"
    assert meta["Detector weights"] == "detector.keras (sha256 abc123)"
    assert meta["Malignancy classifier"] == "none (the detector&#x27;s malignancy)"
    assert meta["Lesion threshold"] == "P(lesion) \u2265 0.45"
    assert meta["Flow method"] == "dis"
    assert "\u00d71.5" in meta["Change thresholds"]
    assert "\u0394E &gt; 12" in meta["Change thresholds"]
    assert meta["Scale"] == "0.4 mm per pixel (given)"
    assert "/data/patient" not in text


def test_aligned_closeup_undoes_the_flow(shifted_pair):
    image0, image1 = shifted_pair(size=96, shift=(6, -4))
    flow = np.zeros(image0.shape[:2] + (2,), np.float32)
    flow[..., 0], flow[..., 1] = 6, -4
    region = (48.0, 50.0, 40.0)
    reference = closeup(image0, region, size=64).astype(int)
    with_flow = aligned_closeup(image1, region, flow=flow, size=64).astype(int)
    by_match = aligned_closeup(image1, region, carried=(54.0, 46.0), centroid=(48.0, 50.0),
                               size=64).astype(int)
    assert np.abs(with_flow - reference).max() <= 1
    assert np.abs(by_match - reference).max() <= 1
    assert np.abs(closeup(image1, region, size=64).astype(int) - reference).mean() > 10


def test_closeup_region_and_outside_pixels():
    assert closeup_region([10, 20, 8, 4]) == (13.5, 21.5, 32)
    assert closeup_region([0, 0, 40, 20]) == (19.5, 9.5, 100.0)
    image = np.full((50, 50, 3), 200, np.uint8)
    picture = closeup(image, (0.0, 0.0, 20.0), size=20)
    assert (picture[:9, :9] == 128).all() and (picture[11:, 11:] == 200).all()


def test_report_rejects_bad_inputs():
    image = _photo()
    with pytest.raises(ValueError, match="needs 1 images"):
        report_html({"lesions": []}, [image, image])
    with pytest.raises(ValueError, match="RGB"):
        report_html({"lesions": []}, [image[..., 0]])
    with pytest.raises(ValueError, match="flow shape"):
        report_html({"matches": [], "gone": [], "new": []}, [image, image],
                    flow=np.zeros((4, 4, 2), np.float32))


def test_photo_scale(tmp_path):
    from synth import io

    from conftest import finish_dataset

    dataset = tmp_path / "dataset"
    paths = io.sample_paths("000000", pair=True)
    io.write_image(dataset / paths["image"], _photo())
    io.write_image(dataset / paths["pair"]["image"], _photo())
    finish_dataset(dataset, [json.dumps({"id": "000000", "index": 0, **paths,
                                         "body": {"mm_per_px": 0.25}, "lesions": []})])
    assert photo_scale(dataset / paths["image"]) == (0.25, "dataset manifest")
    assert photo_scale(dataset / paths["pair"]["image"]) == (0.25, "dataset manifest")
    bodies = tmp_path / "bodies"
    io.write_image(bodies / "back.jpg", _photo())
    io.write_image(bodies / "arm.jpg", _photo())
    (bodies / "bodies.csv").write_text("name,mm_per_px\nback.jpg,0.3\n")
    assert photo_scale(bodies / "back.jpg") == (0.3, "bodies.csv")
    assert photo_scale(bodies / "arm.jpg") == (None, None)
    assert photo_scale(tmp_path / "dataset" / "images" / "elsewhere.jpg") == (None, None)


# --------------------------------------------------------------------------- browser

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Test-only: appended to a copy of the report (the report itself has no scripts).
CHECK_SCRIPT = """<img id="broken" src="data:image/jpeg;base64,AAAA" alt="">
<script>window.addEventListener('load', function () {
  var out = {images: [], rows: {}};
  document.querySelectorAll('img').forEach(function (image) {
    out.images.push({id: image.id, width: image.naturalWidth}); });
  document.querySelectorAll('table').forEach(function (table) {
    out.rows[table.className] = table.tBodies.length ? table.tBodies[0].rows.length : 0; });
  var pre = document.createElement('pre'); pre.id = 'check';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});</script>"""


def _chromium():
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not found (Debian: apt-get install chromium; .ci/run "
                "installs it when apt is available)")


def _run_chromium(chromium, tmp_path, *arguments):
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def _synthesized_pair_result(root):
    """Report data of sample 0 of a synthesized pair dataset: true lesions and true flow."""
    from synth import io

    from lesiontrack.tracking.match import match_lesions

    record = io.read_manifest(root)[0]
    sample = io.load_sample(root, record, pair=True)

    def lesion(entry, where):
        malignancy = 0.8 if entry["malignant"] else 0.2
        return {"id": entry["instance"], "bbox": where["bbox"], "centroid": where["centroid"],
                "area_px": where["area_px"], "score": 0.9, "malignancy": malignancy,
                "label": "malignant" if malignancy >= 0.5 else "benign"}

    lesions0 = [lesion(e, e) for e in record["lesions"] if e.get("bbox")]
    lesions1 = [lesion(e, e["t1"]) for e in record["lesions"] if (e.get("t1") or {}).get("bbox")]
    result = match_lesions(sample["image"], sample["image1"], flow=sample["flow"],
                           lesions0=lesions0, lesions1=lesions1)
    result.update(title="Synthesized pair", images=[record["image"], record["pair"]["image"]],
                  mm_per_px=record["body"]["mm_per_px"], scale_source="dataset manifest")
    return result, [sample["image"], sample["image1"]], sample["flow"]


def test_report_renders_in_headless_chromium(tmp_path):
    from click.testing import CliRunner

    from synth.cli import main as synth_main

    chromium = _chromium()
    dataset = tmp_path / "dataset"
    run = CliRunner().invoke(synth_main, ["make-dataset", "--out", str(dataset), "--count", "2",
                                          "--pairs", "--size", "256x256"])
    assert run.exit_code == 0, run.output
    result, images, flow = _synthesized_pair_result(dataset)
    assert result["matches"], "the synthesized pair should have lesions at both visits"
    page = report_html(result, images, flow=flow)
    report = tmp_path / "report.html"
    report.write_text(page)
    screenshot = tmp_path / "report.png"
    _run_chromium(chromium, tmp_path, f"--screenshot={screenshot}", "--window-size=1280,2000",
                  report.as_uri())
    assert screenshot.stat().st_size > 10_000
    assert cv2.imread(str(screenshot)).shape[:2] == (2000, 1280)

    check = tmp_path / "check.html"
    check.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"))
    dom = _run_chromium(chromium, tmp_path, "--dump-dom", "--virtual-time-budget=5000",
                        check.as_uri()).stdout
    start = dom.index('<pre id="check">') + len('<pre id="check">')
    found = json.loads(dom[start:dom.index("</pre>", start)].replace("&quot;", '"'))
    widths = [image["width"] for image in found["images"] if image["id"] != "broken"]
    expected_images = (1 + 2 * len(result["matches"])
                       + sum(1 if g["out_of_view"] else 2 for g in result["gone"])
                       + len(result["new"]))
    assert len(widths) == expected_images
    assert all(width > 0 for width in widths), widths
    assert [image["width"] for image in found["images"] if image["id"] == "broken"] == [0]
    assert found["rows"].get("matches", 0) == len(result["matches"])
    assert found["rows"].get("gone", 0) == len(result["gone"])
    assert found["rows"].get("new", 0) == len(result["new"])


# --------------------------------------------------------------------------- command


def test_report_command_one_and_two_visits(tmp_path, tiny_detector_path, shifted_pair):
    from click.testing import CliRunner

    from synth import io

    from lesiontrack.cli import main

    image0, image1, *_ = _pair(shifted_pair)
    io.write_image(tmp_path / "t0.png", image0)
    io.write_image(tmp_path / "t1.png", image1)
    runner = CliRunner()
    run = runner.invoke(main, ["report", str(tmp_path / "t0.png"), "--out", str(tmp_path / "one"),
                               "--weights", str(tiny_detector_path), "--title", "Left arm",
                               "--mm-per-px", "0.4"])
    assert run.exit_code == 0, run.output
    result = json.loads((tmp_path / "one" / "report.json").read_text())
    text = (tmp_path / "one" / "report.html").read_text()
    assert result["title"] == "Left arm" and result["mm_per_px"] == 0.4
    assert result["detector"]["weights"]["path"] == str(tiny_detector_path)
    assert result["detector"]["classifier"]["path"].endswith("classifier.keras")
    assert "<h1>Left arm</h1>" in text
    rows = _Page(text).tables.get("lesions", [])
    assert sorted(int(row["attrs"]["data-id"]) for row in rows) == sorted(
        lesion["id"] for lesion in result["lesions"])

    run = runner.invoke(main, ["report", str(tmp_path / "t0.png"), str(tmp_path / "t1.png"),
                               "--out", str(tmp_path / "two"), "--method", "dis",
                               "--detector-weights", str(tiny_detector_path),
                               "--classifier", "none"])
    assert run.exit_code == 0, run.output
    result = json.loads((tmp_path / "two" / "report.json").read_text())
    assert result["tracker"] == {"method": "dis", "weights": None}
    assert result["detector"]["classifier"] is None
    assert all("atypicality" not in lesion for lesion in result["lesions0"])
    assert result["images"] == [str(tmp_path / "t0.png"), str(tmp_path / "t1.png")]
    page = _Page((tmp_path / "two" / "report.html").read_text())
    for name in ("matches", "gone", "new"):
        assert len(page.tables.get(name, [])) == len(result[name])


def test_report_command_bad_input(tmp_path, tiny_detector_path):
    from click.testing import CliRunner

    from synth import io

    from lesiontrack.cli import main

    photo = tmp_path / "photo.png"
    io.write_image(photo, _photo())
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    runner = CliRunner()
    run = runner.invoke(main, ["report", str(photo), str(broken), "--out", str(tmp_path / "out"),
                               "--detector-weights", str(tiny_detector_path), "--method", "dis"])
    assert run.exit_code == 1
    assert run.output.strip().startswith("Error: ") and str(broken) in run.output
    assert len(run.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    run = runner.invoke(main, ["report", str(photo), "--out", str(tmp_path / "out"),
                               "--weights", str(tmp_path / "missing.keras")])
    assert run.exit_code == 1 and "missing.keras" in run.output
    run = runner.invoke(main, ["report", str(photo), str(photo), str(photo), "--out", "x"])
    assert run.exit_code == 2 and "expected PHOTO or T0 T1" in run.output
    run = runner.invoke(main, ["report", str(photo), "--out", "x", "--mm-per-px", "0"])
    assert run.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_report_out_that_is_a_file_is_a_one_line_error(tmp_path):
    from click.testing import CliRunner

    from lesiontrack.cli import main

    taken = tmp_path / "taken"
    taken.write_text("mine")
    run = CliRunner().invoke(main, ["report", str(tmp_path / "photo.jpg"), "--out", str(taken)])
    assert run.exit_code == 1
    assert run.output.strip().startswith("Error: ") and str(taken) in run.output
    assert len(run.output.strip().splitlines()) == 1 and taken.read_text() == "mine"
