"""Sources: checked body photos stay cached under their new index."""
import numpy as np

from synth import sources
from synth.bodies import load_body, read_body_library
from synth.io import write_image
from synth.sources import BodySource


def _photo(rng, colour, size=(60, 80)):
    return np.clip(rng.normal(colour, 4, (*size, 3)), 0, 255).astype(np.uint8)


def test_check_drops_bad_bodies_and_keeps_the_loaded_ones(tmp_path, rng, monkeypatch):
    write_image(tmp_path / "a.jpg", _photo(rng, (40, 60, 140)))  # a blue wall: no skin
    write_image(tmp_path / "b.jpg", _photo(rng, (224, 172, 150)))
    write_image(tmp_path / "c.jpg", _photo(rng, (200, 150, 125)))
    records = [r for r in read_body_library(tmp_path).records if r.name != "a"]
    expected = {r.name: load_body(r)["image"] for r in records}
    source = BodySource(tmp_path)
    source.check()
    assert [r["id"] for r in source.records] == ["b", "c"]
    assert [path.endswith("a.jpg") for path, _ in source.skipped] == [True]

    calls = []
    monkeypatch.setattr(sources, "load_body", lambda record: calls.append(record))
    for index, record in enumerate(source.records):
        np.testing.assert_array_equal(source.load(index)["image"], expected[record["id"]])
    assert calls == []  # served from what check() loaded, not read again
