"""Training of the second-stage malignancy classifier (:mod:`lesiontrack.detection.classifier`).

Training crops: the blended lesions of a synthesized dataset's train split, optionally with
the lesion libraries' own photos of the train split's patients at body-photo scale
(:func:`lesiontrack.detection.crops.library_crops`); lesions of unknown diagnosis (label 3)
and ignored ones (255) are left out. Every epoch draws a fresh augmented view of every crop
(:func:`lesiontrack.detection.crops.augment_crop`). The loss is binary cross-entropy with
class-balanced sample weights (malignant and benign weigh the same in total). Validation is the
malignant-vs-benign AUC of the val split's blended lesions; the best epoch is kept
(:func:`lesiontrack.training.fit`: checkpoint, resume, CSV log, curves). Finally the embedding
is scaled so that 1 is the median atypicality of the training photos' lesions.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lesiontrack import metrics
from synth.io import InputError, atomic_path, read_json

from . import classifier as clf
from .crops import CropSet, augment_crop, dataset_crops, library_crops, view_crop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierTrainingConfig:
    """Options of :func:`train_classifier`."""

    size: int = clf.DEFAULT_SIZE
    filters: tuple = clf.DEFAULT_FILTERS
    features: int = clf.FEATURES
    dropout: float = 0.3
    relative: bool = True
    colour_inputs: bool = False
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    libraries: tuple = field(default_factory=tuple)
    library_copies: int = 3
    mm_per_px: float = 0.4
    seed: int = 0


def split_patients(root):
    """``{split: set of patient ids}`` and ``{split: list of body ids}`` from splits.json."""
    path = Path(root) / "splits.json"
    if not path.is_file():
        raise InputError(f"{path}: no such file (the dataset's patient split is needed)")
    splits = read_json(path)
    patients, bodies = {}, {}
    for key, name in (splits.get("patients") or {}).items():
        patients.setdefault(name, set()).add(str(key))
    for key, name in (splits.get("bodies") or {}).items():
        bodies.setdefault(name, []).append(str(key))
    return patients, bodies


def _train_bodies(root, body_ids):
    """(image, skin mask) of the dataset's training body photos."""
    from synth.bodies import load_body, read_body_library

    info = read_json(Path(root) / "dataset.json")
    folders = (info.get("sources") or {}).get("bodies")
    folders = folders if isinstance(folders, list) else [folders]
    wanted, out = set(body_ids), []
    for folder in folders:
        if not folder or not Path(folder).is_dir():
            continue
        for record in read_body_library(folder).records:
            if record.name in wanted:
                body = load_body(record, find_spots=False)
                out.append((body["image"], body["skin"] & ~body["ignore"]))
    if not out:
        raise InputError(f"{root}: no training body photo found for the library crops")
    return out


def _library_patients(root, folder, patients):
    """The patients of ``patients`` that belong to the library in ``folder``, unprefixed.

    Datasets made from several libraries key patients as ``<library name>/<patient>``
    (``dataset.json`` names each library); single-library datasets use the bare patient id.
    """
    info = read_json(Path(root) / "dataset.json")
    libraries = (info.get("sources") or {}).get("lesion_libraries") or []
    folder = str(Path(folder).resolve())
    name = next((entry.get("name") for entry in libraries
                 if str(Path(entry.get("folder", "")).resolve()) == folder), Path(folder).name)
    prefix = f"{name}/"
    return {key[len(prefix):] if key.startswith(prefix) else key for key in patients
            if "/" not in key or key.startswith(prefix)}


def training_crops(root, config, *, rng):
    """The training and validation CropSets of a dataset (and libraries, if configured)."""
    train = dataset_crops(root, "train")
    val = dataset_crops(root, "val")
    if config.libraries:
        patients, bodies = split_patients(root)
        body_images = _train_bodies(root, bodies.get("train", []))
        train_patients = patients.get("train", set())
        extra = [library_crops(folder, _library_patients(root, folder, train_patients),
                               rng=rng, bodies=body_images, mm_per_px=config.mm_per_px,
                               copies=config.library_copies)
                 for folder in config.libraries]
        train = CropSet.concatenate([train, *extra])
    if not len(train) or train.malignant.all() or not train.malignant.any():
        raise InputError(f"{root}: the train split needs benign and malignant lesions")
    if not len(val):
        raise InputError(f"{root}: no lesion with a known diagnosis in the val split")
    return train, val


def class_weights(malignant):
    """float32 (N,) sample weights giving each class the same total weight."""
    malignant = np.asarray(malignant, bool)
    count = len(malignant)
    positives = max(int(malignant.sum()), 1)
    negatives = max(count - int(malignant.sum()), 1)
    weights = np.where(malignant, count / (2.0 * positives), count / (2.0 * negatives))
    return weights.astype(np.float32)


def _model_inputs(views, config):
    """The classifier's inputs for uint8 (N, S, S, 3) views: the crops (and colour statistics)."""
    crops = views.astype(np.float32)
    return (crops, clf.colour_inputs(views)) if config.colour_inputs else crops


def embedding_scale(model, crops: CropSet, *, size):
    """Median atypicality of the lesions of multi-lesion photos, with unit-length features."""
    groups = {}
    for index, photo in enumerate(crops.photo):
        if photo:
            groups.setdefault(photo, []).append(index)
    groups = [g for g in groups.values() if len(g) >= 2]
    if not groups:
        return 1.0
    index = np.concatenate(groups)
    views = np.stack([view_crop(crops.images[i], size=size) for i in index])
    _, embeddings = clf.predict_crops(model, views, flips=False)
    lookup = {int(i): row for i, row in zip(index, embeddings)}
    values = np.concatenate([clf.atypicality(np.stack([lookup[i] for i in g])) for g in groups])
    return float(np.median(values)) or 1.0


def train_classifier(dataset, out, *, config: ClassifierTrainingConfig | None = None):
    """Train the second-stage classifier on a synthesized dataset and save it.

    Parameters
    ----------
    dataset : path-like
        Synthesized dataset root (``manifest.jsonl``, ``splits.json``).
    out : path-like
        Model path ``.keras``; a CSV log, curves, checkpoint and state file are written beside
        it (:class:`lesiontrack.training.TrainingFiles`), and ``<out>.json`` with the figures.
    config : ClassifierTrainingConfig, optional
        Default: ``ClassifierTrainingConfig()``.

    Returns
    -------
    dict
        Crop counts, best validation AUC and epoch, embedding scale.
    """
    import keras
    import tensorflow as tf

    from lesiontrack.training import TrainingFiles, fit
    from synth.io import write_json

    config = config or ClassifierTrainingConfig()
    out = Path(out)
    files = TrainingFiles.beside(out)
    rng = np.random.default_rng(config.seed)
    train, val = training_crops(dataset, config, rng=rng)
    log.info("training crops: %d (%d malignant; %d from libraries), val crops: %d (%d malignant)",
             len(train), int(train.malignant.sum()), train.origin.count("library"), len(val),
             int(val.malignant.sum()))
    weights = class_weights(train.malignant)
    val_views = np.stack([view_crop(image, size=config.size) for image in val.images])
    val_weights = class_weights(val.malignant)
    steps = int(np.ceil(len(train) / config.batch_size))

    keras.utils.set_random_seed(config.seed)
    val_inputs = _model_inputs(val_views, config)
    colour = {}
    if config.colour_inputs:
        reference = clf.colour_inputs(np.stack([view_crop(image, size=config.size)
                                                for image in train.images]))
        colour = {"colour_mean": reference.mean(0).tolist(),
                  "colour_variance": np.maximum(reference.var(0), 1e-6).tolist()}
    architecture = dict(size=config.size, filters=tuple(config.filters), features=config.features,
                        dropout=config.dropout, relative=config.relative, **colour)
    model = clf.build_classifier(**architecture)
    trainer = clf.training_view(model)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate,
                                                      decay_steps=steps * config.epochs, alpha=0.05)
    trainer.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
                    loss="binary_crossentropy")

    def make_dataset(epoch):
        epoch_rng = np.random.default_rng([config.seed, epoch])
        order = epoch_rng.permutation(len(train))
        views = np.stack([augment_crop(train.images[i], rng=epoch_rng, size=config.size)
                          for i in order])
        labels = train.malignant[order].astype(np.float32)[:, None]
        data = (_model_inputs(views, config), labels, weights[order])
        return tf.data.Dataset.from_tensor_slices(data).batch(config.batch_size)

    def validate(model_view):
        scores = np.asarray(model_view.predict(val_inputs, verbose=0, batch_size=256))[:, 0]
        truth = val.malignant
        fpr, tpr, _ = metrics.roc_curve(scores, truth)
        clipped = np.clip(scores, 1e-6, 1 - 1e-6)
        loss = -np.where(truth, np.log(clipped), np.log(1 - clipped))
        return {"auc": metrics.auc(fpr, tpr),
                "loss": float(np.sum(loss * val_weights) / np.sum(val_weights))}

    record = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
    trainer, history = fit(trainer, make_dataset, validate, out, epochs=config.epochs,
                           steps=steps, monitor="auc", mode="max", config=record)
    best = keras.saving.load_model(files.best, compile=False)
    full = clf.build_classifier(**architecture)
    for layer in best.layers:
        if layer.weights:
            full.get_layer(layer.name).set_weights(layer.get_weights())
    scale = embedding_scale(full, train, size=config.size)
    final = clf.with_embedding_scale(full, scale)
    with atomic_path(out) as tmp:  # keeps the .keras suffix Keras needs
        final.save(tmp)
    best_row = max(history, key=lambda row: row["val_auc"]) if history else {}
    summary = {
        "dataset": str(dataset), "config": record,
        "train_crops": len(train), "train_malignant": int(train.malignant.sum()),
        "train_library_crops": train.origin.count("library"),
        "val_crops": len(val), "val_malignant": int(val.malignant.sum()),
        "best_epoch": best_row.get("epoch"), "best_val_auc": best_row.get("val_auc"),
        "embedding_scale": scale, "parameters": int(final.count_params()),
    }
    write_json(out.with_suffix(".json"), summary)
    return summary
