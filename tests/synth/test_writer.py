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
from synth.pairs.warp import warp_backward
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
    assert {c["name"] for c in coco["categories"]} == {"benign", "malignant", "unknown"}
    info = io.read_json(root / io.DATASET_INFO)
    assert info["procedural"] is True and info["sources"]["lesions"] == "procedural"
    for record in records:
        sample = io.load_sample(root, record, pair=True)
        assert sample["image"].shape == (SIZE[1], SIZE[0], 3) and sample["image"].dtype == np.uint8
        assert sample["labels"].dtype == np.uint8 and sample["instances"].dtype == np.uint16
        assert set(np.unique(sample["labels"])) <= {0, 1, 2, 3, 255}
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
    # Spots found on the body photo are ignored, not background.
    assert (labels == 255).any()
    assert record["fitzpatrick"] in range(1, 7) and 0 <= record["hairiness"] <= 1
    for lesion in record["lesions"]:
        if lesion["bbox"]:
            assert lesion["contrast"] is not None and lesion["library"] == "pad-ufes-20"
            assert (lesion["label"] == 255) == (not lesion["visible"])


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


# --------------------------------------------------------------------------- realism


def _mole_body_folder(root, *, label="lesion"):
    """One body photo: skin on the right half, a blue wall on the left, one mole in lesions.csv."""
    rng = np.random.default_rng(5)
    root.mkdir(parents=True)
    image = np.clip(rng.normal((214, 170, 150), 3, (400, 480, 3)), 0, 255)
    image[:, :240] = np.clip(rng.normal((40, 70, 160), 3, (400, 240, 3)), 0, 255)
    image = image.astype(np.uint8)
    cv2.circle(image, (360, 200), 7, (110, 65, 45), -1)
    io.write_image(root / "body.png", image)
    (root / "lesions.csv").write_text(f"tile,x,y,radius_px,label\nbody,360,200,8,{label}\n")
    return root


def test_real_lesion_of_lesions_csv_becomes_label_3(tmp_path):
    bodies = _mole_body_folder(tmp_path / "bodies")
    config = DatasetConfig(count=1, bodies=str(bodies), size=(256, 256), lesions_per_image=(2, 2),
                           pairs=True, hair_fraction=0.0)
    context = Context.build(config)
    arrays, record = make_sample(0, context)
    [real] = record["real_lesions"]
    assert real["label"] == io.UNKNOWN and real["box_source"] == "lesions.csv"
    region = arrays["instances"] == real["instance"]
    assert region.any() and np.all(arrays["labels"][region] == io.UNKNOWN)
    # The 7 px mole at the crop's zoom (0.8-1.25 of the photo): about pi 7^2 px.
    assert 0.3 * np.pi * 49 < region.sum() < 2.5 * np.pi * 49
    assert (arrays["labels1"] == io.UNKNOWN).any() and real["t1"] is not None
    assert all(l["instance"] != real["instance"] for l in record["lesions"])
    # Ambiguous rows stay ignore.
    ambiguous = _mole_body_folder(tmp_path / "ambiguous", label="ambiguous")
    arrays, record = make_sample(0, Context.build(DatasetConfig(**{**config.__dict__,
                                                                   "bodies": str(ambiguous)})))
    assert not record["real_lesions"] and not (arrays["labels"] == io.UNKNOWN).any()


def test_real_lesions_in_coco_and_summary(tmp_path):
    bodies = _mole_body_folder(tmp_path / "bodies")
    root = tmp_path / "ds"
    config = DatasetConfig(count=2, bodies=str(bodies), size=(256, 256), lesions_per_image=(1, 2))
    summary = make_dataset(config, root, progress=False)
    coco = io.read_json(root / io.COCO_ANNOTATIONS)
    unknown = [a for a in coco["annotations"] if a["category_id"] == io.UNKNOWN]
    assert len(unknown) == summary["lesions"]["real_lesions"] == 2
    info = io.read_json(root / io.DATASET_INFO)
    assert info["conventions"]["labels"]["3"] == "unknown"


def test_nothing_blended_off_skin(tmp_path):
    bodies = _mole_body_folder(tmp_path / "bodies")
    config = DatasetConfig(count=4, bodies=str(bodies), size=(256, 256), lesions_per_image=(6, 6))
    context = Context.build(config)
    body = context.bodies.load(0)
    for index in range(4):
        arrays, record = make_sample(index, context)
        image = arrays["image"].astype(int)
        # Wall pixels are blue (B > R); none is labelled anything but background.
        wall = image[..., 2] > image[..., 0] + 40
        assert wall.any() and np.all(arrays["labels"][wall] == 0)
        for lesion in record["lesions"]:
            assert not (wall & (arrays["instances"] == lesion["instance"])).any()
    assert body["skin"][:, :230].sum() == 0


def test_faint_blends_are_ignore_never_lesion(tmp_path):
    root = tmp_path / "ds"
    config = DatasetConfig(count=2, size=(128, 128), min_contrast=1000.0)
    summary = make_dataset(config, root, progress=False)
    records = io.read_manifest(root)
    coco = io.read_json(root / io.COCO_ANNOTATIONS)
    assert summary["lesions"]["invisible"] == summary["lesions"]["blended"] > 0
    for record in records:
        labels = io.read_label_map(root / record["labels"])
        assert not ((labels == 1) | (labels == 2)).any()
        assert all(l["label"] == 255 and l["visible"] is False for l in record["lesions"])
        assert io.present_lesions(record) == []
    assert coco["annotations"] and all(a["iscrowd"] == 1 for a in coco["annotations"])


def test_hair_changes_pixels_not_labels():
    common = dict(count=1, size=(128, 128), min_contrast=0.0, lesions_per_image=(4, 4))
    bare = make_sample(0, Context.build(DatasetConfig(hair_fraction=0.0, **common)))
    hairy = make_sample(0, Context.build(DatasetConfig(hair_fraction=1.0, **common)))
    assert bare[1]["hair"] is None and hairy[1]["hair"]["count"] >= 10
    assert np.array_equal(bare[0]["labels"], hairy[0]["labels"])
    assert np.array_equal(bare[0]["instances"], hairy[0]["instances"])
    assert not np.array_equal(bare[0]["image"], hairy[0]["image"])


def test_several_lesion_libraries_with_weights(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    _lesion_folder(first, [("a", 0), ("b", 1), ("c", 0), ("d", 1)])
    _lesion_folder(second, [("a", 0), ("b", 1), ("c", 0), ("d", 1)])
    root = tmp_path / "ds"
    result = _run("make-dataset", "--lesions", first, "--lesions", f"{second}:4", "--out", root,
                  "--count", 6, "--size", "128x128", "--no-progress")
    assert result.exit_code == 0, result.output
    info = io.read_json(root / io.DATASET_INFO)
    libraries = info["sources"]["lesion_libraries"]
    assert [(l["name"], l["weight"]) for l in libraries] == [("first", 1.0), ("second", 4.0)]
    splits = io.read_json(root / io.SPLITS)["patients"]
    # The same patient ids in both libraries are different patients.
    assert {"first/pa", "second/pa"} <= set(splits)
    drawn = [l["library"] for r in io.read_manifest(root) for l in r["lesions"]]
    assert drawn.count("second") > drawn.count("first")
    result = _run("make-dataset", "--lesions", f"{second}:-1", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "positive" in result.output


def test_skin_tone_option_and_one_split(tmp_path):
    root = tmp_path / "dark"
    result = _run("make-dataset", "--out", root, "--count", 8, "--size", "96x96",
                  "--skin-tone", "V-VI", "--split", "test", "--no-progress")
    assert result.exit_code == 0, result.output
    records = io.read_manifest(root)
    assert records and all(r["split"] == "test" for r in records)
    assert all(r["fitzpatrick"] in (5, 6) and r["skin_tone"]["to_type"] in (5, 6) for r in records)
