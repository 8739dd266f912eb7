"""synth.pairs.evolution: lesions that stay, grow, shrink, appear or vanish."""
import json

import numpy as np
import pytest

from synth.pairs.evolution import LESION_STATES, draw_lesion_changes


def test_draw_lesion_changes():
    malignant = [i % 2 == 0 for i in range(200)]
    plans = draw_lesion_changes(200, rng=np.random.default_rng(0), malignant=malignant)
    assert len(plans) == 200
    json.dumps(plans)
    states = [plan["state"] for plan in plans]
    assert set(states) <= set(LESION_STATES)
    assert states.count("same") > 50 and "grown" in states and "new" in states
    for plan in plans:
        assert len(plan["colour_shift"]) == 3
        if plan["state"] == "grown":
            assert plan["scale"] > 1
        elif plan["state"] == "shrunk":
            assert plan["scale"] < 1
        else:
            assert plan["scale"] == 1
    assert draw_lesion_changes(200, rng=np.random.default_rng(0), malignant=malignant) == plans
    with pytest.raises(ValueError):
        draw_lesion_changes(3, rng=np.random.default_rng(0), malignant=[True])


def test_malignant_lesions_grow_more_often():
    plans = draw_lesion_changes(2000, rng=np.random.default_rng(1),
                                malignant=[i % 2 == 0 for i in range(2000)])
    grown = [p["state"] == "grown" for p in plans]
    assert sum(grown[0::2]) > 1.5 * sum(grown[1::2])
