"""Atomic file writes and model loading shared by every stage."""
import contextlib
import json
import os
import shutil
import tempfile

from tfmc.errors import ModelLoadError


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary keeps ``path``'s suffix so that writers which infer a format
    from the extension (``model.save('x.keras')``) behave the same. A failure
    inside the block removes the temporary and leaves ``path`` untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    stem, suffix = os.path.splitext(base)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=directory)
    os.close(fd)
    os.remove(tmp)  # writers such as SavedModel want to create the path themselves
    try:
        yield tmp
        if os.path.isdir(tmp):
            replace_dir(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)


def replace_dir(tmp, path):
    """Move the finished folder ``tmp`` onto ``path``, removing what ``path`` held."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)
    os.replace(tmp, path)


def write_bytes(path, data):
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return os.fspath(path)


def write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_model(model, path):
    """Save a tf_keras model (.keras, .h5 or SavedModel folder) atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return os.fspath(path)


def load_model(path, custom_objects=None):
    """Load a tf_keras model from a .keras / .h5 file or a SavedModel folder.

    Raises:
      ModelLoadError: the path is missing or does not hold a tf_keras model.
    """
    from tfmc import _keras

    keras = _keras.keras
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelLoadError(f"model path {path!r} does not exist (expected a .keras/.h5 file or a SavedModel folder)")
    objects = dict(_keras.custom_objects())
    objects.update(custom_objects or {})
    try:
        with keras.utils.custom_object_scope(objects):
            return keras.models.load_model(path, compile=False)
    except Exception as exc:  # keras raises many types here; one clear message is what a user needs
        raise ModelLoadError(
            f"could not load {path!r} as a tf_keras model (.keras, .h5 or SavedModel): {exc}"
        ) from exc
