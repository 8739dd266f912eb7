"""synth make-dataset: determinism, resume, shards, splits, pairs, COCO and bad input."""
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from synth import io
from synth.cli import main
from synth.deform import warp_backward
from synth.writer import Context, DatasetConfig, make_dataset, make_sample

SIZE = (128, 128)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def procedural_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds") / "procedural"
    config = DatasetConfig(count=5, pairs=True, seed=3, size=SIZE)
    make_dataset(config, root, progress=False)
    return root, config


def test_same_seed_same_files_any_workers(procedural_dataset, tmp_path):
    root, config = procedural_dataset
    other = tmp_path / "again"
    make_dataset(config, other, workers=2, progress=False)
    assert _files(root) == _files(other)


def test_another_seed_differs(procedural_dataset, tmp_path):
    root, config = procedural_dataset
    other = tmp_path / "seed4"
    make_dataset(DatasetConfig(**{**config.__dict__, "seed": 4, "count": 1}), other, progress=False)
    assert (root / "images/000000.jpg").read_bytes() != (other / "images/000000.jpg").read_bytes()


def test_resume_after_interruption(procedural_dataset, tmp_path):
    root, config = procedural_dataset
    copy = tmp_path / "resumed"
    shutil.copytree(root, copy)
    # An interruption: the last sample's record half-written, one of its files missing, and a
    # temporary file left behind.
    manifest = copy / io.MANIFEST
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:-2]) + "\n" + lines[-2][: len(lines[-2]) // 2])
    (copy / "pairs/000003_flow.flo").unlink()
    (copy / "images/.tmp-abc.jpg").write_bytes(b"partial")
    make_dataset(config, copy, progress=False)
    assert _files(root) == _files(copy)


def test_shards_merge_by_manifest(procedural_dataset, tmp_path):
    root, config = procedural_dataset
    sharded = tmp_path / "sharded"
    for number in (1, 2):
        make_dataset(config, sharded, shard=(number, 2), progress=False)
    assert not (sharded / io.MANIFEST).exists()
    assert sorted(p.name for p in sharded.glob("manifest*")) == ["manifest-1-of-2.jsonl",
                                                                  "manifest-2-of-2.jsonl"]
    assert io.read_manifest(sharded) == io.read_manifest(root)
    assert (sharded / "images/000004.jpg").read_bytes() == (root / "images/000004.jpg").read_bytes()


def test_manifest_labels_and_coco_agree(procedural_dataset):
    root, _ = procedural_dataset
    records = io.read_manifest(root)
    assert [r["index"] for r in records] == list(range(5))
    coco = io.read_json(root / io.COCO_ANNOTATIONS)
    assert {c["name"] for c in coco["categories"]} == {"benign", "malignant"}
    info = io.read_json(root / io.DATASET_INFO)
    assert info["procedural"] is True and info["sources"]["lesions"] == "procedural"
    for record in records:
        sample = io.load_sample(root, record, pair=True)
        assert sample["image"].shape == (SIZE[1], SIZE[0], 3) and sample["image"].dtype == np.uint8
        assert sample["labels"].dtype == np.uint8 and sample["instances"].dtype == np.uint16
        assert set(np.unique(sample["labels"])) <= {0, 1, 2, 255}
        assert sample["flow"].dtype == np.float32 and sample["flow"].shape == (SIZE[1], SIZE[0], 2)
        for lesion in record["lesions"]:
            region = sample["instances"] == lesion["instance"]
            if lesion["bbox"] is None:  # new in t1
                assert not region.any()
                continue
            assert np.all(sample["labels"][region] == lesion["label"])
            x, y, w, h = lesion["bbox"]
            ys, xs = np.nonzero(region)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
    boxes = sorted(tuple(a["bbox"]) for a in coco["annotations"] if a["image_id"] == 0)
    assert boxes == sorted(tuple(l["bbox"]) for l in records[0]["lesions"] if l["bbox"])


def test_pair_flow_maps_t1_back_onto_t0(procedural_dataset):
    root, _ = procedural_dataset
    for record in io.read_manifest(root):
        sample = io.load_sample(root, record, pair=True)
        valid = sample["valid"]
        # Label maps are exact: warping t1's labels back by the flow gives t0's labels on valid
        # pixels, except where a lesion changed between the visits.
        changed = np.zeros_like(valid)
        for lesion in record["lesions"]:
            if lesion["change"]["state"] != "same":
                grown = cv2.dilate(((sample["instances"] == lesion["instance"])
                                    | (warp_backward(sample["instances1"], sample["flow"],
                                                     interpolation="nearest") == lesion["instance"])
                                    ).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
                changed |= grown
        back = warp_backward(sample["labels1"], sample["flow"], interpolation="nearest")
        check = valid & ~changed & (back != 255) & (sample["labels"] != 255)
        assert np.mean(back[check] == sample["labels"][check]) > 0.99
        # Images carry illumination and camera changes, so compare structure: t1 warped back
        # is much closer to t0 than t1 itself.
        grey0 = cv2.cvtColor(sample["image"], cv2.COLOR_RGB2GRAY).astype(np.float32)
        grey1 = cv2.cvtColor(sample["image1"], cv2.COLOR_RGB2GRAY).astype(np.float32)
        warped = warp_backward(grey1, sample["flow"])
        high = lambda g: g - cv2.GaussianBlur(g, (0, 0), 6)
        aligned = np.abs(high(warped) - high(grey0))[valid].mean()
        unaligned = np.abs(high(grey1) - high(grey0))[valid].mean()
        assert aligned < 0.7 * unaligned


def test_splits_share_no_patient_or_body(procedural_dataset):
    root, _ = procedural_dataset
    splits = io.read_json(root / io.SPLITS)
    for record in io.read_manifest(root):
        assert splits["bodies"][record["body"]["id"]] == record["split"]
        for lesion in record["lesions"]:
            assert splits["patients"][lesion["patient"]] == record["split"]


def test_real_data_sample(shared_data):
    config = DatasetConfig(count=1, lesions=str(shared_data / "lesions/pad-ufes-20"),
                           bodies=str(shared_data / "bodies/itobos"), pairs=True, size=(256, 256))
    context = Context.build(config, check=False)
    arrays, record = make_sample(0, context)
    assert record["lesions"], "no lesion was placed on a real body photo"
    assert all(l["source"].endswith(".jpg") for l in record["lesions"])
    assert record["body"]["mm_per_px"] > 0
    labels = arrays["labels"]
    assert ((labels == 1) | (labels == 2)).any()
    # Real moles already on the body photo are ignored, not background.
    assert (labels == 255).any()


# --------------------------------------------------------------------------- CLI and bad input


def _run(*args):
    return CliRunner().invoke(main, [*map(str, args)], catch_exceptions=False)


def test_cli_makes_dataset_and_contact_sheet(tmp_path):
    out = tmp_path / "ds"
    result = _run("make-dataset", "--out", out, "--count", 2, "--pairs", "--size", "96x96",
                  "--no-progress")
    assert result.exit_code == 0, result.output
    assert "procedural" in result.output
    sheet = tmp_path / "sheet.png"
    result = _run("contact-sheet", out, "--out", sheet, "--count", 2, "--tile", 96)
    assert result.exit_code == 0, result.output
    image = io.read_image(sheet)
    assert image.shape[1] >= 4 * 96


def test_cli_refuses_folder_with_another_dataset(tmp_path):
    out = tmp_path / "ds"
    assert _run("make-dataset", "--out", out, "--count", 1, "--size", "96x96",
                "--no-progress").exit_code == 0
    before = _files(out)
    result = _run("make-dataset", "--out", out, "--count", 1, "--size", "96x96", "--seed", 9,
                  "--no-progress")
    assert result.exit_code == 1
    assert "holds another dataset" in result.output and str(out) in result.output
    assert _files(out) == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other/notes.txt").write_text("x")
    result = _run("make-dataset", "--out", tmp_path / "other", "--count", 1, "--no-progress")
    assert result.exit_code == 1 and "not empty" in result.output


def _lesion_folder(root, rows, *, header="image,mask,malignant,diagnosis,patient"):
    (root / "images").mkdir(parents=True)
    lines = [header]
    for name, malignant in rows:
        image = np.zeros((40, 40, 3), np.uint8)
        cv2.circle(image, (20, 20), 12, (120, 70, 50), -1)
        mask = (image[..., 0] > 0).astype(np.uint8) * 255
        io.write_image(root / f"images/{name}.png", image)
        io.write_image(root / f"images/{name}_mask.png", mask)
        lines.append(f"images/{name}.png,images/{name}_mask.png,{malignant},X,p{name}")
    (root / "lesions.csv").write_text("\n".join(lines) + "\n")


def test_cli_skips_corrupt_lesions_with_warning(tmp_path):
    lesions = tmp_path / "lesions"
    _lesion_folder(lesions, [("a", 0), ("b", 1), ("c", 1), ("d", 0)])
    (lesions / "images/c.png").write_bytes(b"not an image at all")
    out = tmp_path / "ds"
    result = _run("make-dataset", "--lesions", lesions, "--out", out, "--count", 2, "--size", "96x96",
                  "--no-progress")
    assert result.exit_code == 0, result.output
    assert "c.png" in result.output and "skipped" in result.output
    for record in io.read_manifest(out):
        assert all(not l["source"].endswith("c.png") for l in record["lesions"])


def test_cli_errors_when_nothing_usable(tmp_path):
    lesions = tmp_path / "lesions"
    _lesion_folder(lesions, [("a", 0)])
    (lesions / "images/a.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    out = tmp_path / "ds"
    result = _run("make-dataset", "--lesions", lesions, "--out", out, "--count", 1, "--no-progress")
    assert result.exit_code == 1
    assert "Error:" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_cli_unknown_csv_layout(tmp_path):
    lesions = tmp_path / "lesions"
    _lesion_folder(lesions, [("a", 0)], header="picture,outline,cancer,what,who")
    result = _run("make-dataset", "--lesions", lesions, "--out", tmp_path / "ds", "--count", 1)
    assert result.exit_code == 1
    assert "lesions.csv" in result.output and "image" in result.output


def test_cli_body_without_skin(tmp_path):
    bodies = tmp_path / "bodies"
    bodies.mkdir()
    io.write_image(bodies / "wall.png", np.full((200, 200, 3), (40, 90, 200), np.uint8))
    result = _run("make-dataset", "--bodies", bodies, "--out", tmp_path / "ds", "--count", 1)
    assert result.exit_code == 1
    assert "wall.png" in result.output and "skin" in result.output
    assert not (tmp_path / "ds").exists()


def test_cli_bad_size_and_shard(tmp_path):
    result = _run("make-dataset", "--out", tmp_path / "ds", "--size", "big")
    assert result.exit_code == 2 and "WxH" in result.output
    result = _run("make-dataset", "--out", tmp_path / "ds", "--shard", "3/2")
    assert result.exit_code == 2


def test_lesions_take_their_physical_size(tmp_path):
    lesions = tmp_path / "lesions"
    _lesion_folder(lesions, [("a", 0), ("b", 1)], header="image,mask,malignant,diagnosis,patient")
    csv = lesions / "lesions.csv"
    rows = csv.read_text().splitlines()
    csv.write_text("\n".join([rows[0] + ",diameter_mm"] + [r + ",8" for r in rows[1:]]) + "\n")
    config = DatasetConfig(count=1, lesions=str(lesions), size=(256, 256), mm_per_px=0.25,
                           lesions_per_image=(3, 3))
    context = Context.build(config)
    _, record = make_sample(0, context)
    mm_per_px = record["body"]["mm_per_px"]
    for lesion in record["lesions"]:
        # 8 mm with +-15 % jitter, at the crop's own scale (body scale / zoom).
        assert 8 * 0.85 <= lesion["diameter_mm"] <= 8 * 1.15
        assert lesion["diameter_px"] == pytest.approx(lesion["diameter_mm"] / mm_per_px, rel=2e-3)
        # The blended disk spans that diameter, up to the augmentation's scale of +-10 %.
        assert 0.8 * lesion["diameter_px"] <= max(lesion["bbox"][2:]) <= 1.25 * lesion["diameter_px"]
