"""Atomic file writes and model loading shared by every stage."""
import contextlib
import json
import os
import shutil
import tempfile

from tfmc.errors import ModelLoadError, OutputError

# What a SavedModel folder holds: save_model replaces a folder only if it holds nothing else.
SAVEDMODEL_ENTRIES = frozenset({"saved_model.pb", "saved_model.pbtxt", "variables", "assets", "fingerprint.pb",
                                "keras_metadata.pb"})


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


def check_format(config, fmt, version, what):
    """Raise UsageError unless ``config`` is a dict of format ``fmt`` at a version up to ``version``.

    For tfmc's versioned JSON files (latency tables, precision tables);
    ``what`` names the kind of file in the message.
    """
    from tfmc.errors import UsageError

    if not isinstance(config, dict) or config.get("format") != fmt:
        raise UsageError(f"not a {what} (expected format {fmt!r})")
    if config.get("version", version) > version:
        raise UsageError(f"{what} version {config['version']} is newer than this tfmc reads ({version})")
    return config


def save_model(model, path):
    """Save a tf_keras model (.keras, .h5 or SavedModel folder) atomically.

    An existing file is replaced. An existing folder is replaced only when it
    is empty or holds a SavedModel and nothing else: a folder with other
    files is never emptied.

    Raises:
      OutputError: ``path`` is a folder that holds other files, or a folder
        where a .keras / .h5 file was asked for.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        if os.path.splitext(path)[1] in (".keras", ".h5"):
            raise OutputError(f"{path!r} is a folder; a {os.path.splitext(path)[1]} model is a file")
        others = sorted(set(os.listdir(path)) - SAVEDMODEL_ENTRIES)
        if others:
            raise OutputError(f"{path!r} is a folder that holds other files ({', '.join(others[:3])}); a SavedModel "
                              "replaces only an empty folder or an earlier SavedModel")
    with atomic_path(path) as tmp:
        model.save(tmp)
    return os.fspath(path)


# What tf_keras writes into a .keras archive when the model has no assets.
_KERAS_ARCHIVE = frozenset({"metadata.json", "config.json", "model.weights.h5"})


def _load_keras_archive(path, custom_objects, safe_mode):
    """tf_keras' .keras loader, with the weights read from an extracted file; None for an archive with assets.

    tf_keras reads model.weights.h5 through zipfile, whose seek rewinds and
    re-reads the member at every backward jump h5py makes, so its loading
    time grows with the square of the file: 68 s for ConvNeXtTiny's 28 M
    parameters, over 6 minutes for ConvNeXtBase's 88 M. These are the steps
    of ``tf_keras.src.saving.saving_lib.load_model`` (the pinned tf_keras),
    with the HDF5 file on disk; tests/test_io.py checks they give what
    ``keras.models.load_model`` gives.
    """
    import zipfile

    from tf_keras.src.saving import saving_lib, serialization_lib

    with zipfile.ZipFile(path) as archive:
        if set(archive.namelist()) != _KERAS_ARCHIVE:
            return None
        config = json.loads(archive.read("config.json"))
        config["compile_config"] = None
        folder = tempfile.mkdtemp()
        try:
            weights = archive.extract("model.weights.h5", folder)
            enabled = getattr(saving_lib._SAVING_V3_ENABLED, "value", False)
            saving_lib._SAVING_V3_ENABLED.value = True
            try:
                with serialization_lib.ObjectSharingScope():
                    model = serialization_lib.deserialize_keras_object(config, custom_objects, safe_mode=safe_mode)
                store = saving_lib.H5IOStore(weights, mode="r")
                try:
                    saving_lib._load_state(model, weights_store=store, assets_store=None, inner_path="",
                                           visited_trackables=set())
                finally:
                    store.close()
            finally:
                saving_lib._SAVING_V3_ENABLED.value = enabled
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return model


def load_model(path, custom_objects=None, *, trust_code=False):
    """Load a tf_keras model from a .keras / .h5 file or a SavedModel folder, refusing code it carries.

    The format is judged by the content (zip, HDF5 or a SavedModel folder),
    not by the name. Before anything is built, the stored config is read:
    a Lambda layer (its Python code runs while the model is rebuilt) or a
    layer class that is neither Keras' nor registered is refused unless
    ``trust_code`` is set.

    Args:
      path: the file or folder.
      custom_objects: {name: class} for the file's own layers, added to tfmc's.
      trust_code: allow Lambda layers and unregistered classes: only for
        files from a source you trust.

    Returns:
      A functional or Sequential tf_keras model with a known input shape.

    Raises:
      ModelLoadError: the path is missing, is not a tf_keras model, carries
        code and ``trust_code`` is False (the message names the layer), or
        holds a subclassed model or one without an input shape.

    Example:
      >>> model = load_model("model.h5")  # doctest: +SKIP
      >>> model = load_model("downloaded.keras", trust_code=True)  # doctest: +SKIP
    """
    from tfmc import _keras, model_files

    keras = _keras.keras
    path = os.fspath(path)
    fmt = model_files.model_format(path)
    objects = dict(_keras.custom_objects())
    objects.update(custom_objects or {})
    if not trust_code:
        model_files.check_safe(path, model_files.read_configs(path, fmt), objects)
    with contextlib.ExitStack() as stack:
        source = path
        if fmt == "keras" and not path.endswith(".keras"):  # tf_keras reads a zip only under a .keras name
            source = os.path.join(stack.enter_context(tempfile.TemporaryDirectory()), "model.keras")
            os.symlink(os.path.abspath(path), source)
        try:
            with keras.utils.custom_object_scope(objects):
                model = (_load_keras_archive(path, objects, safe_mode=not trust_code) if fmt == "keras" else None)
                if model is None:
                    model = keras.models.load_model(source, compile=False, safe_mode=not trust_code)
        except Exception as exc:  # keras raises many types here; one clear message is what a user needs
            raise ModelLoadError(
                f"could not load {path!r} as a tf_keras model (.keras, .h5 or SavedModel): {exc}"
            ) from exc
    try:
        _keras.require_graph_model(model)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path!r}: {exc}") from None
    return model
