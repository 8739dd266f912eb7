"""Tracking pairs: the second visit t1 of a synthetic photo and its exact flow ground truth.

Li, Esteva et al. (2016), section 3.2: t1 is t0 after a change between visits, so dense
correspondence comes for free. One module per part of that change:

* :mod:`~synth.pairs.transform` the mapping t0 -> t1 (similarity, thin-plate spline,
  perspective) and its flow, validity mask and backward map;
* :mod:`~synth.pairs.spline` the thin-plate spline and its lattice;
* :mod:`~synth.pairs.motion` random viewpoint + non-rigid motion;
* :mod:`~synth.pairs.warp` rendering t1 from t0, and t1 back onto t0 by a flow;
* :mod:`~synth.pairs.illumination` light and white-balance change;
* :mod:`~synth.pairs.evolution` lesions that stay, grow, shrink, appear or vanish.
"""
from synth.pairs.evolution import LESION_STATES, draw_lesion_changes
from synth.pairs.illumination import apply_illumination, change_illumination
from synth.pairs.motion import random_pair_transform
from synth.pairs.transform import PairTransform, identity_transform, make_pair_transform
from synth.pairs.warp import warp_backward, warp_image

__all__ = ["LESION_STATES", "PairTransform", "apply_illumination", "change_illumination",
           "draw_lesion_changes", "identity_transform", "make_pair_transform",
           "random_pair_transform", "warp_backward", "warp_image"]
