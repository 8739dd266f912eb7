"""Second-stage malignancy classifier and atypicality of the detector's lesions.

The FCN proposes lesions (Li, Esteva et al. 2016, fig. 3); a small CNN then looks at each
proposal through a fixed-context crop (:mod:`lesiontrack.detection.crops`: a square of twice
the lesion's size around its centre, at the photo's own resolution, resized to 32 or 48 px)
and gives P(malignant). Its penultimate layer, normalised to unit length and divided by the
typical distance between two lesions of one training photo, is the lesion's *embedding*.

Atypicality is the "ugly duckling" sign (Soenksen et al., Sci. Transl. Med. 2021): a lesion
that looks unlike the patient's other lesions deserves a closer look. Per photo it is the
Euclidean distance from a lesion's embedding to the element-wise median embedding of the
photo's *other* lesions, so 1 means "as different as two lesions of a training photo
usually are"; 0 for a photo's only lesion.

Layers are named: ``stage{k}_{j}`` (conv + BN + ReLU), ``pool{k}``, ``features`` (the
penultimate dense layer), ``malignancy`` (sigmoid) and ``embedding`` (the scaled unit-length
features). The saved model maps uint8-range RGB crops to ``[malignancy, embedding]``.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from synth.io import InputError

from .crops import CONTEXT, crop_lesions

DEFAULT_FILTERS = (24, 48, 96)
DEFAULT_SIZE = 32
FEATURES = 64


@keras.saving.register_keras_serializable(package="lesiontrack")
class SkinRelative(layers.Layer):
    """The crop's colour relative to the skin around the lesion.

    In a crop of twice the lesion's size the lesion fills the central half; the band outside
    it (``size // 4`` pixels wide) is mostly skin. Its mean colour, per crop and channel, is
    subtracted, so the network sees how the lesion differs from its own skin whatever the
    exposure and skin tone (a Poisson blend keeps exactly that difference). Input and output
    (B, S, S, C), in the input's units.
    """

    def call(self, inputs):
        size = int(inputs.shape[1])
        band = max(size // 4, 1)
        ring = np.ones((1, size, size, 1), np.float32)
        ring[:, band:size - band, band:size - band] = 0.0
        ring = ops.convert_to_tensor(ring / ring.sum(), dtype=inputs.dtype)
        reference = ops.sum(inputs * ring, axis=(1, 2), keepdims=True)
        return inputs - reference


def build_classifier(*, size=DEFAULT_SIZE, filters=DEFAULT_FILTERS, features=FEATURES,
                     dropout=0.3, embedding_scale=1.0, relative=True, colour_mean=None,
                     colour_variance=None, name="lesion_classifier"):
    """Connect the classifier's layers (no weights, no compilation).

    Parameters
    ----------
    size : int
        Crop side in pixels.
    filters : sequence of int
        Conv widths, one stage (two 3x3 convs) each, a 2x2 max-pooling between stages.
    features : int
        Width of the penultimate layer (the embedding's dimension).
    dropout : float
        Dropout before the malignancy head (training only).
    embedding_scale : float
        Typical distance between unit-length features of two lesions of one photo; the
        embedding is divided by it.
    relative : bool
        Also feed the crop's colour relative to its surrounding skin (:class:`SkinRelative`)
        as three more channels.
    colour_mean, colour_variance : sequence of float, optional
        Given: a second input, the colour statistics of the lesion
        (:func:`colour_inputs`), standardised with these and joined to the image features.

    Returns
    -------
    keras.Model
        float32 (B, size, size, 3) RGB in [0, 255] (and float32 (B, 31) colour statistics)
        -> [float32 (B, 1) P(malignant), float32 (B, features) embedding].
    """
    inputs = keras.Input((size, size, 3), name="crop")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inputs)
    if relative:
        difference = layers.Rescaling(1.0 / 32.0, name="relative_scale")(
            SkinRelative(name="relative")(inputs))
        x = layers.Concatenate(name="channels")([x, difference])
    for stage, width in enumerate(filters, start=1):
        if stage > 1:
            x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
        for k in (1, 2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False,
                              name=f"stage{stage}_{k}")(x)
            x = layers.BatchNormalization(name=f"stage{stage}_{k}_bn")(x)
            x = layers.Activation("relu", name=f"stage{stage}_{k}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    model_inputs = inputs
    if colour_mean is not None:
        colour = keras.Input((len(colour_mean),), name="colour")
        standard = layers.Normalization(mean=list(colour_mean), variance=list(colour_variance),
                                        name="colour_norm")(colour)
        standard = layers.Dense(32, activation="relu", name="colour_dense")(standard)
        x = layers.Concatenate(name="joined")([x, standard])
        model_inputs = [inputs, colour]
    x = layers.Dense(features, activation="relu", name="features")(x)
    head = layers.Dropout(dropout, name="dropout")(x)
    malignancy = layers.Dense(1, activation="sigmoid", dtype="float32", name="malignancy")(head)
    unit = layers.UnitNormalization(name="unit")(x)
    embedding = layers.Rescaling(1.0 / float(embedding_scale), dtype="float32",
                                 name="embedding")(unit)
    return keras.Model(model_inputs, [malignancy, embedding], name=name)


def training_view(model):
    """The classifier with its malignancy output only (shares the layers), for ``fit``."""
    return keras.Model(model.inputs, model.get_layer("malignancy").output, name="malignancy_only")


def with_embedding_scale(model, embedding_scale):
    """A copy of ``model`` whose embedding is divided by ``embedding_scale``."""
    size = crop_size(model)
    filters = tuple(int(model.get_layer(f"stage{k}_1").filters)
                    for k in range(1, 10) if _has_layer(model, f"stage{k}_1"))
    copy = build_classifier(size=size, filters=filters,
                            features=int(model.get_layer("features").units),
                            dropout=float(model.get_layer("dropout").rate),
                            embedding_scale=embedding_scale,
                            relative=_has_layer(model, "relative"), name=model.name,
                            **colour_normalisation(model))
    copy.set_weights(model.get_weights())
    return copy


def colour_normalisation(model):
    """``colour_mean`` and ``colour_variance`` of a classifier with colour inputs, else {}."""
    if not _has_layer(model, "colour_norm"):
        return {}
    config = model.get_layer("colour_norm").get_config()
    return {"colour_mean": np.ravel(config["mean"]).tolist(),
            "colour_variance": np.ravel(config["variance"]).tolist()}


def colour_inputs(crops):
    """Colour statistics of the lesion in each crop: float32 (N, 31).

    The lesion's box is the central half of a crop of twice its size; it is resized to 24 px
    and described by :func:`lesiontrack.baselines.colour_stats.colour_features`.
    """
    import cv2

    from lesiontrack.baselines.colour_stats import SIZE, colour_features

    crops = np.asarray(crops)
    side = crops.shape[1]
    lo, hi = side // 4, side - side // 4
    rows = [colour_features(cv2.resize(np.ascontiguousarray(crop[lo:hi, lo:hi]), (SIZE, SIZE),
                                       interpolation=cv2.INTER_AREA)) for crop in crops]
    return np.asarray(rows, np.float32).reshape(len(crops), -1)


def _has_layer(model, name):
    """Whether ``model`` has a layer called ``name``."""
    return any(layer.name == name for layer in model.layers)


def check_classifier(model, path):
    """Raise InputError unless ``model`` looks like this classifier."""
    names = {layer.name for layer in model.layers}
    missing = {"features", "malignancy", "embedding"} - names
    shape = model.inputs[0].shape
    if missing or len(model.outputs) != 2:
        raise InputError(f"{path}: not a lesion classifier (no layer "
                         f"{', '.join(sorted(missing)) or 'pair of outputs'})")
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise InputError(f"{path}: classifier input must be square RGB crops, got {shape}")


def load_classifier_file(path):
    """A saved classifier (``.keras``); InputError naming the file when unusable."""
    from lesiontrack.model_cache import load_model_file

    model = load_model_file(path)
    check_classifier(model, path)
    return model


def load_classifier(weights="default"):
    """The classifier for ``weights`` ("default" or a path), through the model cache."""
    from lesiontrack.model_cache import cached_model

    return cached_model("classifier", weights, load_classifier_file)


def crop_size(model) -> int:
    """Crop side the classifier expects, in pixels."""
    return int(model.inputs[0].shape[1])


def predict_crops(model, crops, *, batch_size=256, flips=True):
    """P(malignant) and embeddings of lesion crops.

    Parameters
    ----------
    model : keras.Model
        From :func:`build_classifier` or :func:`load_classifier`.
    crops : ndarray
        uint8 (N, S, S, 3), S = :func:`crop_size`.
    batch_size : int
    flips : bool
        Average over the crop and its three flips (the classifier was trained on every
        orientation).

    Returns
    -------
    probabilities : ndarray
        float32 (N,).
    embeddings : ndarray
        float32 (N, D).
    """
    from lesiontrack.model_cache import graph_function

    crops = np.asarray(crops)
    size = crop_size(model)
    dimension = int(model.outputs[1].shape[-1])
    if len(crops) == 0:
        return np.zeros(0, np.float32), np.zeros((0, dimension), np.float32)
    if crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
        raise ValueError(f"crops must be (N, {size}, {size}, 3), got {crops.shape}")
    views = [crops, crops[:, :, ::-1], crops[:, ::-1], crops[:, ::-1, ::-1]] if flips else [crops]
    # Colour statistics of the inscribed ellipse do not change under flips: computed once.
    colour = colour_inputs(crops) if len(model.inputs) == 2 else None
    forward = graph_function(model)
    probabilities = np.zeros(len(crops), np.float32)
    embeddings = np.zeros((len(crops), dimension), np.float32)
    for view in views:
        for start in range(0, len(crops), batch_size):
            batch = [np.ascontiguousarray(view[start:start + batch_size], np.float32)]
            if colour is not None:
                batch.append(colour[start:start + batch_size])
            malignancy, embedding = forward(*batch)
            probabilities[start:start + len(batch[0])] += np.asarray(malignancy)[:, 0]
            embeddings[start:start + len(batch[0])] += np.asarray(embedding)
    return probabilities / len(views), embeddings / len(views)


def atypicality(embeddings):
    """How far each lesion's embedding lies from the photo's other lesions (ugly duckling).

    Parameters
    ----------
    embeddings : ndarray
        float (N, D), the lesions of one photo.

    Returns
    -------
    ndarray
        float64 (N,): Euclidean distance from each embedding to the element-wise median of
        the other N - 1 embeddings; all 0 when N = 1; with N = 2 both get their distance.
    """
    embeddings = np.asarray(embeddings, np.float64)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got {embeddings.shape}")
    count = len(embeddings)
    out = np.zeros(count)
    if count < 2:
        return out
    for index in range(count):
        others = np.delete(embeddings, index, axis=0)
        out[index] = np.linalg.norm(embeddings[index] - np.median(others, axis=0))
    return out


def score_lesions(image, lesions, model, *, flips=True):
    """Malignancy and atypicality of a photo's lesions from the second stage.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    lesions : list of dict
        Records with ``bbox`` [x, y, w, h].
    model : keras.Model
        The classifier.
    flips : bool
        See :func:`predict_crops`.

    Returns
    -------
    malignancy : ndarray
        float32 (N,) P(malignant).
    atypicality : ndarray
        float64 (N,), see :func:`atypicality`.
    """
    crops = crop_lesions(image, [lesion["bbox"] for lesion in lesions], size=crop_size(model),
                         context=CONTEXT)
    probabilities, embeddings = predict_crops(model, crops, flips=flips)
    return probabilities, atypicality(embeddings)


def grade_lesions(image, lesions, model, *, flips=True):
    """Lesion records with the second stage's malignancy and atypicality.

    Parameters
    ----------
    image : ndarray
        uint8 RGB (H, W, 3).
    lesions : list of dict
        Records of :func:`lesiontrack.detection.proposals.heatmap_to_lesions`.
    model : keras.Model
        The classifier.
    flips : bool
        See :func:`predict_crops`.

    Returns
    -------
    list of dict
        New records: ``malignancy`` (second stage P(malignant)), ``malignancy_fcn`` (the
        FCN's share of malignant probability, as before), ``atypicality`` and ``label``
        ("malignant" when malignancy >= 0.5 else "benign").
    """
    if not lesions:
        return []
    malignancy, atypical = score_lesions(image, lesions, model, flips=flips)
    graded = []
    for lesion, probability, distance in zip(lesions, malignancy, atypical):
        record = dict(lesion)
        record["malignancy_fcn"] = lesion.get("malignancy")
        record["malignancy"] = round(float(probability), 4)
        record["atypicality"] = round(float(distance), 4)
        record["label"] = "malignant" if probability >= 0.5 else "benign"
        graded.append(record)
    return graded
