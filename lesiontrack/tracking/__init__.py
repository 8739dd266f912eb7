"""Lesion tracking between visits (Li, Esteva et al. 2016, fig. 3 right): the siamese flow
network (``layers``, ``model``), its data, loss and training (``data``, ``losses``, ``train``),
inference (``infer``), dense flow behind one function (``flow``) and lesion matching
(``match``); the coarse-to-fine "pwc" variant (``pwc``, trained by ``train``) and the
forward-backward flow confidence (``consistency``). Imports go one way: match ->
consistency -> flow -> infer -> model -> pwc, layers."""
