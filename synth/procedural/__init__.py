"""Built-in procedural skin and lesions, so a dataset can be made with no data on disk.

Two kinds of source, both deterministic per record: body photos
(:mod:`~synth.procedural.skin`) and lesion crops (:mod:`~synth.procedural.lesions`), made of
the noise fields of :mod:`~synth.procedural.noise`.

``procedural_body_records(n, seed=...)`` and ``procedural_lesion_records(n, seed=...)`` return
lists of small JSON-serialisable dicts (the procedural "catalogue"); ``render_procedural_body``
and ``render_procedural_lesion`` turn one record into arrays, identically every time. The
lower-level ``procedural_body`` and ``procedural_lesion`` draw from an explicit ``rng``.
"""
from synth.procedural.lesions import (procedural_lesion, procedural_lesion_records,
                                      render_procedural_lesion)
from synth.procedural.skin import (BACKGROUNDS, FITZPATRICK_TONES, procedural_body,
                                   procedural_body_records, render_procedural_body)

__all__ = ["BACKGROUNDS", "FITZPATRICK_TONES", "procedural_body", "procedural_body_records",
           "procedural_lesion", "procedural_lesion_records", "render_procedural_body",
           "render_procedural_lesion"]
