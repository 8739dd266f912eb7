"""Lesion detection (Li, Esteva et al. 2016, fig. 3 left): the FCN, its data, loss, training,
heatmap-to-lesion proposals and inference on photos. Modules: ``model``, ``data``, ``losses``,
``train``, ``proposals``, ``detect``."""
