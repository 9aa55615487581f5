"""Reference models trained on Fashion-MNIST by fixed recipes, cached by recipe so benchmarks do not retrain.

Run: .venv/bin/python bench/reference.py NAME [--data-dir D] [--cache-dir C]

``reference_model(name)`` builds the named model of tfmc.models, trains it
on the 55,000 training images of Fashion-MNIST with that name's fixed recipe
(tfmc.train.fit: Adam, cosine decay of the learning rate to zero, no
augmentation) and scores it on the official 10,000-image test set. The
trained model is saved in ``bench/.cache/`` (git-ignored) under a file name
keyed by a hash of the name, the recipe and the model's architecture, with
its info (recipe, accuracy, training time, MACs, parameters) as JSON beside
it; the next call with the same recipe loads both instead of training.
"""
import argparse
import copy
import hashlib
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfmc  # noqa: E402  must precede tensorflow
from tfmc import io, models, train  # noqa: E402
from tfmc import data as data_lib  # noqa: E402
from harness import accuracy_standard_error  # noqa: E402

CACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache")

BUILDERS = {
    "mobilenet_v2_small": models.mobilenet_v2_small,
    "resnet_small": models.resnet_small,
    "keras_mobilenet_v2": models.keras_mobilenet_v2,
}

# Every field is part of the cache key. optimizer, lr_schedule and
# augmentation name what tfmc.train.fit does; they are recorded, and checked,
# so that the cached info says how the model was trained.
_BASE_RECIPE = {
    "data": "fashion_mnist",
    "model_kwargs": {},
    "epochs": 10,
    "batch_size": 128,
    "optimizer": "adam",
    "learning_rate": 2e-3,
    "lr_schedule": "cosine",
    "augmentation": "none",
    "seed": 0,
    "train_images": None,  # None: all 55,000; a number: the first that many of the training split
    "test_images": None,  # None: the official 10,000
}

RECIPES = {
    "mobilenet_v2_small": dict(_BASE_RECIPE),
    "resnet_small": dict(_BASE_RECIPE),
    "keras_mobilenet_v2": dict(_BASE_RECIPE, model_kwargs={"alpha": 0.35}),
}


def recipe_for(name, overrides=None):
    """The fixed recipe of reference model ``name``, with ``overrides`` applied.

    Args:
      name: a key of RECIPES.
      overrides: optional dict of recipe fields to change (e.g. a tiny
        ``train_images`` for tests); unknown fields are rejected.

    Returns:
      A new dict.

    Raises:
      ValueError: an unknown name or field, or a field tfmc.train.fit cannot follow.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown reference model {name!r}; expected one of {', '.join(RECIPES)}")
    recipe = copy.deepcopy(RECIPES[name])  # callers may change what they get back
    unknown = sorted(set(overrides or {}) - set(recipe))
    if unknown:
        raise ValueError(f"unknown recipe fields {unknown}; the fields are {', '.join(recipe)}")
    recipe.update(copy.deepcopy(overrides or {}))
    fixed = {"optimizer": "adam", "lr_schedule": "cosine", "augmentation": "none"}
    for field, value in fixed.items():
        if recipe[field] != value:
            raise ValueError(f"recipe field {field!r} must be {value!r} (what tfmc.train.fit does), "
                             f"got {recipe[field]!r}")
    return recipe


def cache_key(name, recipe, model):
    """16 hex digits of a SHA-256 over the name, the recipe and ``model``'s architecture (its JSON config)."""
    text = json.dumps({"name": name, "recipe": recipe, "architecture": json.loads(model.to_json())}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def cache_paths(name, key, cache_dir=None):
    """(model .keras path, info .json path) of the cache entry ``key`` of ``name``."""
    stem = os.path.join(cache_dir or CACHE_DIR, f"{name}-{key}")
    return stem + ".keras", stem + ".json"


def _limit(x, y, count):
    return (x, y) if count is None else (x[:count], y[:count])


def reference_model(name, *, data_dir=None, cache_dir=None, recipe=None, verbose=1):
    """A trained reference model and its info, loaded from the cache or trained and cached.

    Args:
      name: 'mobilenet_v2_small', 'resnet_small' or 'keras_mobilenet_v2'
        (alpha 0.35, fed 32 x 32 x 3 images).
      data_dir: folder with the four Fashion-MNIST IDX files; None for the
        Debian location (/usr/share/datasets/fashion-mnist).
      cache_dir: where trained models are kept; default bench/.cache.
      recipe: optional overrides of the fixed recipe's fields (see
        ``recipe_for``); any change gives another cache entry.
      verbose: 0 silent, 1 a line per stage, 2 also Keras' line per epoch.

    Returns:
      (model, info): the trained tf_keras model and a dict with ``name``,
      ``recipe``, ``cache_key``, ``test_accuracy`` and its
      ``test_standard_error`` (sqrt(p (1 - p) / n)), ``test_images``,
      ``val_accuracy``, ``train_seconds`` (wall clock of training on the
      machine that trained it), ``macs``, ``params``, ``input_shape``,
      ``host`` and ``cached`` (whether this call loaded it).

    Raises:
      ValueError: an unknown name or recipe field.
      tfmc.data.DataError: the Fashion-MNIST files are missing or damaged.

    Example:
      >>> model, info = reference_model("mobilenet_v2_small")
      >>> print(f"{info['test_accuracy']:.4f} +- {info['test_standard_error']:.4f}")
    """
    recipe = recipe_for(name, recipe)
    architecture = BUILDERS[name](seed=recipe["seed"], **recipe["model_kwargs"])
    key = cache_key(name, recipe, architecture)
    model_path, info_path = cache_paths(name, key, cache_dir)
    if os.path.exists(model_path) and os.path.exists(info_path):
        model = io.load_model(model_path)
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
        if verbose:
            print(f"{name}: loaded {model_path}", flush=True)
        return model, dict(info, cached=True)

    dataset = data_lib.load_for_model(recipe["data"], architecture, data_dir=data_dir, seed=recipe["seed"],
                                      classes=True)
    x_train, y_train = _limit(dataset.x_train, dataset.y_train, recipe["train_images"])
    x_test, y_test = _limit(dataset.x_test, dataset.y_test, recipe["test_images"])
    if verbose:
        print(f"{name}: training on {len(x_train)} images for {recipe['epochs']} epochs", flush=True)
    start = time.monotonic()
    model, _ = train.fit(architecture, x_train, y_train, epochs=recipe["epochs"], batch_size=recipe["batch_size"],
                         learning_rate=recipe["learning_rate"], seed=recipe["seed"], verbose=max(0, verbose - 1) * 2)
    train_seconds = time.monotonic() - start
    accuracy = train.accuracy(model, x_test, y_test)
    info = {
        "name": name,
        "recipe": recipe,
        "cache_key": key,
        "test_accuracy": accuracy,
        "test_standard_error": accuracy_standard_error(accuracy, len(y_test)),
        "test_images": len(y_test),
        "val_accuracy": train.accuracy(model, dataset.x_val, dataset.y_val),
        "train_images": len(y_train),
        "train_seconds": round(train_seconds, 1),
        "macs": tfmc.count_macs(model),
        "params": tfmc.count_params(model),
        "input_shape": list(dataset.input_shape),
        "host": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    # The info goes first: an entry counts as cached only once the model file exists.
    io.write_json(info_path, info)
    io.save_model(model, model_path)
    if verbose:
        print(f"{name}: saved {model_path}", flush=True)
    return model, dict(info, cached=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--data-dir", help="folder with the four Fashion-MNIST IDX files (default: Debian's)")
    parser.add_argument("--cache-dir", help=f"where trained models are kept (default {CACHE_DIR})")
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    args = parser.parse_args()
    try:
        _, info = reference_model(args.name, data_dir=args.data_dir, cache_dir=args.cache_dir, verbose=args.verbose)
    except data_lib.DataError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
