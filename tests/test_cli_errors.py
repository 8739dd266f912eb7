"""Bad input on every command: one line "Error: ...", a non-zero exit, nothing half-written.

Cases found by trying the commands as a user would, then a fixed table of odd files (sizes,
channels, bit depths, empty and random bytes) run through every command that reads photos.
"""
import io as bytes_io
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import _smooth_texture, write_tiny_dataset
from lesiontrack.cli import main as lesiontrack_main
from synth import io
from synth.cli import main as synth_main


def assert_clean(result, *, codes=(0, 1)):
    """No traceback reached the user; a failure is one line "Error: ..." at the end."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}\n{result.output}") \
            from result.exception
    assert "Traceback" not in result.output
    assert result.exit_code in codes, result.output
    if result.exit_code:
        lines = result.output.strip().splitlines()
        errors = [line for line in lines if line.startswith("Error:")]
        assert len(errors) == 1 and lines[-1] == errors[0], result.output
        return errors[0]
    return None


def assert_nothing_written(folder):
    assert not folder.exists() or not any(folder.rglob("*")), list(folder.rglob("*"))


def run(group, args):
    return CliRunner().invoke(group, [str(a) for a in args])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """good.png (64x64 texture), tall.png (3x4000), one.png (1x1), wide.png (4000x3), a folder."""
    root = tmp_path_factory.mktemp("photos")
    io.write_image(root / "good.png", _smooth_texture(64, 64, seed=1))
    io.write_image(root / "other.png", _smooth_texture(64, 64, seed=2))
    io.write_image(root / "tall.png", _smooth_texture(4000, 3, seed=3))
    io.write_image(root / "wide.png", _smooth_texture(3, 4000, seed=4))
    io.write_image(root / "one.png", np.full((1, 1, 3), 128, np.uint8))
    (root / "folder.jpg").mkdir()
    (root / "existing").write_text("keep me\n")
    return root


@pytest.fixture(scope="module")
def synth_dataset(tmp_path_factory):
    """Two procedural 64x64 samples with pairs, as synth make-dataset writes them."""
    from synth.writer import DatasetConfig, make_dataset

    root = tmp_path_factory.mktemp("synth") / "ds"
    make_dataset(DatasetConfig(count=2, pairs=True, seed=0, size=(64, 64)), root, progress=False)
    return root


# --------------------------------------------------------------------------- cases found by hand


def test_detect_out_is_an_existing_file(files, tiny_detector_path):
    result = run(lesiontrack_main, ["detect", files / "good.png", "--out", files / "existing",
                                    "--weights", tiny_detector_path, "--classifier", "none"])
    assert assert_clean(result) == f"Error: {files / 'existing'}: exists and is not a folder"
    assert (files / "existing").read_text() == "keep me\n"


@pytest.mark.parametrize("command", [
    ["match", "good.png", "other.png", "--method", "dis"],
    ["evaluate", "tracking", "pairs", "--methods", "zero"],
    ["evaluate", "detection", "pairs", "--weights", "none", "--baseline", "b.npz"],
])
def test_out_is_an_existing_file(files, command):
    args = [files / a if a.endswith((".png", ".npz")) or a == "pairs" else a for a in command]
    result = run(lesiontrack_main, args + ["--out", files / "existing"])
    assert assert_clean(result) == f"Error: {files / 'existing'}: exists and is not a folder"


def test_detect_on_a_3x4000_photo(files, tiny_detector_path, tmp_path):
    out = tmp_path / "out"
    result = run(lesiontrack_main, ["detect", files / "tall.png", "--out", out,
                                    "--weights", tiny_detector_path, "--classifier", "none"])
    assert assert_clean(result) is None
    assert io.read_image(out / "tall_overlay.png").shape == (4000, 3, 3)


@pytest.mark.parametrize("photo, size", [("one.png", "1x1"), ("wide.png", "4000x3"),
                                         ("tall.png", "3x4000")])
@pytest.mark.parametrize("command", ["match", "flow"])
def test_too_small_photo(files, tmp_path, photo, size, command, tiny_detector_path):
    out = tmp_path / "out"
    extra = (["--detector-weights", tiny_detector_path] if command == "match"
             else []) + ["--method", "dis"]
    for args in ([files / photo, files / "good.png"], [files / "good.png", files / photo]):
        result = run(lesiontrack_main, [command, *args, "--out", out, *extra])
        assert assert_clean(result) == (f"Error: {files / photo}: {size} pixels is too small; "
                                        "need at least 8x8")
        assert_nothing_written(out)


@pytest.mark.parametrize("command", [
    ["detect", "folder.jpg", "--classifier", "none", "--weights", "DETECTOR"],
    ["flow", "folder.jpg", "good.png", "--method", "zero"],
    ["flow", "good.png", "folder.jpg", "--method", "zero"],
    ["match", "folder.jpg", "good.png", "--method", "dis", "--detector-weights", "DETECTOR"],
])
def test_a_folder_given_as_a_photo(files, tmp_path, command, tiny_detector_path):
    args = [files / a if a.endswith((".png", ".jpg")) else a for a in command]
    args = [tiny_detector_path if a == "DETECTOR" else a for a in args]
    out = tmp_path / "out"
    result = run(lesiontrack_main, args + ["--out", out])
    assert assert_clean(result) == f"Error: {files / 'folder.jpg'}: is a folder, not an image file"
    assert_nothing_written(out)


def test_flow_out_is_a_folder(files, tmp_path):
    (tmp_path / "flow.flo").mkdir()
    result = run(lesiontrack_main, ["flow", files / "good.png", files / "other.png", "--method",
                                    "zero", "--out", tmp_path / "flow.flo", "--npy"])
    assert assert_clean(result).startswith("Error: ")
    assert str(tmp_path / "flow.flo") in result.output
    assert not list(tmp_path.glob(".tmp-*")) and not (tmp_path / "flow.npy").exists()


def test_train_out_under_a_file(files, tiny_dataset):
    result = run(lesiontrack_main, ["train", "baseline", tiny_dataset, "--out",
                                    files / "existing" / "baseline.npz"])
    assert assert_clean(result).startswith(f"Error: {files / 'existing'}")


def test_contact_sheet_of_a_sample_whose_files_disagree(synth_dataset, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(synth_dataset, copy)
    io.write_image(copy / "images/000000.jpg", np.zeros((5, 7, 3), np.uint8))
    result = run(synth_main, ["contact-sheet", copy, "--out", tmp_path / "sheet.png"])
    assert assert_clean(result) == (f"Error: {copy / 'labels/000000.png'}: 64x64 does not match "
                                    f"{copy / 'images/000000.jpg'} (7x5) of sample 000000")
    assert not (tmp_path / "sheet.png").exists()


def test_index_of_a_binary_manifest(synth_dataset, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(synth_dataset, copy)
    before = (copy / io.COCO_ANNOTATIONS).read_bytes()
    (copy / io.MANIFEST).write_bytes(bytes(range(128, 256)))
    for command in (["index", copy], ["contact-sheet", copy, "--out", tmp_path / "s.png"]):
        result = run(synth_main, command)
        assert assert_clean(result) == (f"Error: {copy / io.MANIFEST}: not a manifest "
                                        "(not UTF-8 text)")
    assert (copy / io.COCO_ANNOTATIONS).read_bytes() == before


@pytest.mark.parametrize("command, problem", [
    (["make-dataset", "--count", "1", "--out"], "exists and is not a folder"),
    (["contact-sheet", "DATASET", "--out"], "is a folder; expected a file name"),
])
def test_synth_out_of_the_wrong_kind(synth_dataset, tmp_path, command, problem):
    """The InputError line naming the path, exit 1, as lesiontrack's commands."""
    target = tmp_path / ("file" if command[0] == "make-dataset" else "folder.png")
    target.write_text("x") if command[0] == "make-dataset" else target.mkdir()
    args = [synth_dataset if a == "DATASET" else a for a in command]
    result = run(synth_main, args + [target])
    assert assert_clean(result, codes=(1,)) == f"Error: {target}: {problem}"
    assert target.is_dir() or target.read_text() == "x"


def _failing_after_writing(module, name, make_state=False):
    """A stand-in for library function ``name`` of ``module`` that writes into its output
    (a partial file, a state file with ``make_state``) and then fails on bad input."""
    import importlib

    def fails(source, out, **options):
        folder = out if name.startswith("evaluate") else out.parent
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "partial.json").write_text("{")
        if make_state:
            out.with_suffix(".state.json").write_text("{}")
        raise io.InputError(f"{source}: no such dataset")

    return importlib.import_module(module), name, fails


FAILING = {
    "evaluate detection": (["evaluate", "detection", "DS", "--classifier", "none", "--out"],
                           "lesiontrack.evaluate", "evaluate_detection", "OUT"),
    "evaluate tracking": (["evaluate", "tracking", "DS", "--methods", "zero", "--out"],
                          "lesiontrack.tracking.evaluate", "evaluate_tracking", "OUT"),
    "train detector": (["train", "detector", "DS", "--out"], "lesiontrack.detection.train",
                       "train_detector", "OUT/model.keras"),
    "train tracker": (["train", "tracker", "DS", "--out"], "lesiontrack.tracking.train",
                      "train_tracker", "OUT/model.keras"),
}


@pytest.mark.parametrize("name", sorted(FAILING))
def test_a_failed_command_leaves_no_output_folder(name, tmp_path, monkeypatch):
    command, module, function, out = FAILING[name]
    monkeypatch.setattr(*_failing_after_writing(module, function))
    target = tmp_path / "new" / "sub"
    args = [tmp_path / "missing" if a == "DS" else a for a in command]
    result = run(lesiontrack_main, args + [out.replace("OUT", str(target))])
    assert assert_clean(result) == f"Error: {tmp_path / 'missing'}: no such dataset"
    assert not (tmp_path / "new").exists()
    # A folder that was there before is left as it was, with what the run wrote.
    target.mkdir(parents=True)
    (target / "mine.txt").write_text("keep")
    result = run(lesiontrack_main, args + [out.replace("OUT", str(target))])
    assert result.exit_code == 1 and (target / "mine.txt").read_text() == "keep"


def test_a_failed_training_keeps_what_it_can_resume_from(tmp_path, monkeypatch):
    monkeypatch.setattr(*_failing_after_writing("lesiontrack.detection.train", "train_detector",
                                                make_state=True))
    out = tmp_path / "run" / "model.keras"
    result = run(lesiontrack_main, ["train", "detector", tmp_path / "missing", "--out", out])
    assert result.exit_code == 1 and out.with_suffix(".state.json").is_file()


def test_real_failures_leave_no_output_folder(tmp_path, files):
    """Bad dataset paths and unreadable weights, run for real."""
    (tmp_path / "bad.keras").write_bytes(b"not a model")
    for args in (["evaluate", "detection", tmp_path / "missing", "--classifier", "none"],
                 ["evaluate", "tracking", tmp_path / "missing", "--methods", "zero"],
                 ["evaluate", "detection", files, "--weights", tmp_path / "bad.keras",
                  "--classifier", "none"],
                 ["detect", files / "good.png", "--weights", tmp_path / "bad.keras"]):
        result = run(lesiontrack_main, args + ["--out", tmp_path / "new" / "out"])
        assert assert_clean(result) and not (tmp_path / "new").exists(), args
    for kind, model in (("detector", "m.keras"), ("tracker", "m.keras"), ("baseline", "m.npz")):
        result = run(lesiontrack_main, ["train", kind, tmp_path / "missing", "--out",
                                        tmp_path / "new" / model])
        assert assert_clean(result) and not (tmp_path / "new").exists(), kind


def test_make_dataset_skips_unusable_body_photos(tmp_path):
    bodies = tmp_path / "bodies"
    bodies.mkdir()
    io.write_image(bodies / "skin.jpg", np.clip(np.random.default_rng(0).normal(
        [200, 160, 140], 6, (160, 160, 3)), 0, 255).astype(np.uint8))
    (bodies / "empty.jpg").write_bytes(b"")
    io.write_image(bodies / "thin.png", np.full((3, 400, 3), 180, np.uint8))
    result = run(synth_main, ["make-dataset", "--bodies", bodies, "--out", tmp_path / "ds",
                              "--count", "1", "--size", "64x64", "--no-progress"])
    assert assert_clean(result) is None
    assert "skipped 2 unusable source files" in result.output
    assert (tmp_path / "ds" / io.MANIFEST).is_file()


# --------------------------------------------------------------------------- fuzz table


def _png(array):
    return cv2.imencode(".png", array)[1].tobytes()


def _fuzz_cases():
    """name -> file bytes: odd sizes, 1-4 channels, 8/16-bit and float, empty, random bytes."""
    rng = np.random.default_rng(20261201)

    def pixels(shape, dtype=np.uint8, high=256):
        return rng.integers(0, high, shape).astype(dtype)

    grey_alpha = bytes_io.BytesIO()
    Image.fromarray(pixels((30, 41, 2)), "LA").save(grey_alpha, "PNG")
    jpeg = cv2.imencode(".jpg", pixels((30, 41, 3)))[1].tobytes()
    return {
        "1x1.png": _png(pixels((1, 1, 3))),
        "7x5.png": _png(pixels((5, 7, 3))),
        "9x8.jpg": cv2.imencode(".jpg", pixels((8, 9, 3)))[1].tobytes(),
        "3x4000.png": _png(pixels((4000, 3, 3))),
        "4000x3.png": _png(pixels((3, 4000, 3))),
        "odd.jpg": cv2.imencode(".jpg", pixels((37, 53, 3)))[1].tobytes(),
        "grey.png": _png(pixels((30, 41))),
        "grey-alpha.png": grey_alpha.getvalue(),
        "rgba.png": _png(pixels((30, 41, 4))),
        "rgb16.png": _png(pixels((30, 41, 3), np.uint16, 65536)),
        "grey16.tif": cv2.imencode(".tif", pixels((30, 41), np.uint16, 65536))[1].tobytes(),
        "float.tif": cv2.imencode(".tif", rng.normal(0.5, 0.6, (30, 41, 3)).astype(
            np.float32))[1].tobytes(),
        "empty.jpg": b"",
        "empty.png": b"",
        "random.jpg": pixels(2000).tobytes(),
        "random.png": pixels(2000).tobytes(),
        "random.tif": pixels(2000).tobytes(),
        "text.jpg": b"not an image at all\n",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "truncated.png": _png(pixels((30, 41, 3)))[:150],
        "jpeg-named.png": jpeg,
    }


FUZZ = _fuzz_cases()


@pytest.fixture(scope="module")
def fuzz_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    for name, data in FUZZ.items():
        (root / name).write_bytes(data)
    return root


@pytest.mark.parametrize("name", sorted(FUZZ))
def test_fuzz_photo_commands(name, fuzz_files, files, tmp_path, tiny_detector_path):
    photo, good = fuzz_files / name, files / "good.png"
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    shutil.copy(photo, pairs / f"a_t0{photo.suffix}")
    shutil.copy(good, pairs / "a_t1.png")
    (pairs / "keypoints.csv").write_text("pair,x0,y0,x1,y1,kind\na,2,2,3,3,lesion\n")
    commands = {
        "detect": ["detect", photo, "--weights", tiny_detector_path, "--classifier", "none"],
        "flow0": ["flow", photo, good, "--method", "dis", "--npy"],
        "flow1": ["flow", good, photo, "--method", "dis"],
        "match": ["match", photo, good, "--method", "dis", "--detector-weights",
                  tiny_detector_path],
        "tracking": ["evaluate", "tracking", pairs, "--methods", "zero,dis",
                     "--detector-weights", "none"],
    }
    outcomes = {}
    for key, command in commands.items():
        out = tmp_path / (f"{key}.flo" if key.startswith("flow") else key)
        result = run(lesiontrack_main, command + ["--out", out])
        outcomes[key] = assert_clean(result)
        if outcomes[key]:
            assert_nothing_written(out)
            assert not list(tmp_path.glob(".tmp-*"))
    # A photo is usable or not whatever the command (flow and match need 8x8).
    if outcomes["flow0"] is None:
        assert outcomes["detect"] is None and outcomes["match"] is None


FUZZ_DATASET = ["1x1.png", "3x4000.png", "empty.jpg", "random.jpg", "text.jpg", "grey16.tif"]


@pytest.mark.parametrize("name", FUZZ_DATASET)
def test_fuzz_dataset_commands(name, fuzz_files, synth_dataset, tmp_path, tiny_detector_path):
    data = FUZZ[name]
    copy = tmp_path / "ds"
    shutil.copytree(synth_dataset, copy)
    (copy / "images/000000.jpg").write_bytes(data)
    split = io.read_manifest(copy)[0]["split"]
    tiny = write_tiny_dataset(tmp_path / "tiny", count=3)
    (tiny / "images/000000.jpg").write_bytes(data)
    for group, command, out in [
        (synth_main, ["contact-sheet", copy, "--out"], tmp_path / "sheet.png"),
        (synth_main, ["index", copy], None),
        (lesiontrack_main, ["evaluate", "tracking", copy, "--split", split, "--methods",
                            "zero", "--detector-weights", "none", "--out"], tmp_path / "t"),
        (lesiontrack_main, ["evaluate", "detection", tiny, "--split", "train", "--weights",
                            tiny_detector_path, "--classifier", "none", "--out"],
         tmp_path / "d"),
        (lesiontrack_main, ["train", "baseline", tiny, "--limit", "2", "--out"],
         tmp_path / "baseline.npz"),
    ]:
        result = run(group, command + ([out] if out else []))
        if assert_clean(result) and out is not None:
            assert_nothing_written(out)
    assert not list(copy.rglob(".tmp-*"))
    bodies = tmp_path / "bodies"
    bodies.mkdir()
    (bodies / f"body{Path(name).suffix}").write_bytes(data)
    result = run(synth_main, ["make-dataset", "--bodies", bodies, "--out", tmp_path / "made",
                              "--count", "1", "--size", "64x64", "--no-progress"])
    assert_clean(result)


def test_train_on_a_file_broken_inside_the_data_pipeline(tmp_path):
    """An InputError raised while tf.data reads a file (TensorFlow wraps it in its own error
    and traceback) leaves the training loop as the one-line InputError."""
    import keras
    import tensorflow as tf

    from lesiontrack.training import fit

    def read(index):
        raise io.InputError(f"{tmp_path / 'broken.flo'}: not a .flo file")

    def make_dataset(epoch):
        data = tf.data.Dataset.from_tensor_slices(np.zeros(4, np.float32))
        data = data.map(lambda x: tf.numpy_function(read, [x], tf.float32))
        return data.map(lambda x: (tf.reshape(x, (1,)), tf.reshape(x, (1,)))).batch(2).repeat()

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(io.InputError) as caught:
        fit(model, make_dataset, lambda m: {"loss": 0.0}, tmp_path / "out" / "model.keras",
            epochs=1, steps=1, monitor="loss", mode="min")
    assert str(caught.value) == f"{tmp_path / 'broken.flo'}: not a .flo file"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert_nothing_written(tmp_path / "out")
