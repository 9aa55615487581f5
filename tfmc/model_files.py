"""What a saved model holds, read without loading it: its format (judged by content) and the layers that carry code."""
import json
import os
import zipfile

from tfmc.errors import ModelLoadError

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# HDF5 allows a user block before the superblock: the signature may sit at 0, 512, 1024, 2048, ...
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096, 8192)
FORMATS = ("keras", "h5", "savedmodel")
TRUST_HINT = "trust_code=True (Python) or --trust-model-code (command line)"


def model_format(path):
    """``"keras"`` (zip), ``"h5"`` (HDF5) or ``"savedmodel"`` (folder): what ``path`` holds, whatever its name.

    Raises:
      ModelLoadError: the path is missing, or is none of the three.

    Example:
      >>> model = tfmc.models.digits_cnn((8, 8, 1))
      >>> model_format(tfmc.io.save_model(model, os.path.join(tmp_dir, "model.keras")))
      'keras'
      >>> path = tfmc.io.save_model(model, os.path.join(tmp_dir, "model.h5"))
      >>> os.rename(path, os.path.join(tmp_dir, "renamed.keras"))
      >>> model_format(os.path.join(tmp_dir, "renamed.keras"))  # judged by content, not by name
      'h5'
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelLoadError(f"model path {path!r} does not exist (expected a .keras/.h5 file or a SavedModel folder)")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return "savedmodel"
        raise ModelLoadError(f"{path!r} is a folder without saved_model.pb; expected a .keras/.h5 file or a "
                             "SavedModel folder")
    try:
        with open(path, "rb") as f:
            head = f.read(len(ZIP_MAGIC))
            if head == ZIP_MAGIC:
                return "keras"
            for offset in _HDF5_OFFSETS:
                f.seek(offset)
                if f.read(len(HDF5_MAGIC)) == HDF5_MAGIC:
                    return "h5"
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    raise ModelLoadError(f"{path!r} is neither a .keras (zip) nor an HDF5 file (it starts with {head!r}); expected a "
                         ".keras/.h5 file or a SavedModel folder")


def read_configs(path, fmt=None):
    """The Keras config JSON a saved model holds, as a list of parsed objects, without building any layer.

    .keras: config.json in the zip; .h5: the ``model_config`` attribute;
    SavedModel: every node's metadata in keras_metadata.pb (or, for models
    saved before it existed, the metadata in saved_model.pb's object graph).

    Raises:
      ModelLoadError: the file is damaged or holds no Keras model config.
    """
    path = os.fspath(path)
    fmt = fmt or model_format(path)
    try:
        if fmt == "keras":
            return [_zip_config(path)]
        if fmt == "h5":
            return [_h5_config(path)]
        return _savedmodel_configs(path)
    except (OSError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path!r} is damaged: {exc}") from None


def _zip_config(path):
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            raise ModelLoadError(f"{path!r} is a zip file without config.json, not a .keras model")
        return json.loads(archive.read("config.json").decode("utf-8"))


def _h5_config(path):
    import h5py

    with h5py.File(path, "r") as f:
        config = f.attrs.get("model_config")
    if config is None:
        raise ModelLoadError(f"{path!r} is an HDF5 file without a model config (weights only?); expected a whole "
                             "saved model")
    return json.loads(config.decode("utf-8") if isinstance(config, bytes) else config)


def _savedmodel_configs(path):
    from google.protobuf import message

    from tfmc._keras import tf

    metadata_path = os.path.join(path, "keras_metadata.pb")
    texts = []
    try:
        if os.path.isfile(metadata_path):
            from tf_keras.protobuf import saved_metadata_pb2

            saved = saved_metadata_pb2.SavedMetadata()
            with open(metadata_path, "rb") as f:
                saved.ParseFromString(f.read())
            texts = [node.metadata for node in saved.nodes]
        else:
            graph = tf.__internal__.saved_model.parse_saved_model(path).meta_graphs[0].object_graph_def
            texts = [node.user_object.metadata for node in graph.nodes
                     if node.WhichOneof("kind") == "user_object" and node.user_object.identifier.startswith("_tf_keras")]
    except (message.DecodeError, IOError, IndexError) as exc:
        raise ModelLoadError(f"{path!r} is a damaged SavedModel: {exc}") from None
    configs = [json.loads(text) for text in texts if text]
    if not configs:
        raise ModelLoadError(f"{path!r} is a SavedModel without a Keras model in it (saved with tf.saved_model.save?); "
                             "expected one saved by a tf_keras model's save()")
    return configs


def _builtin_layer_classes():
    from tf_keras.src.layers import serialization

    serialization.populate_deserializable_objects()
    return set(serialization.LOCAL.ALL_OBJECTS)


def unsafe_layers(configs, custom_objects=()):
    """(layer name, class name, why) for each layer of ``configs`` that would run code of the file's own on loading.

    A Lambda layer's config holds Python bytecode, run when the model is
    rebuilt; a layer of a class that is neither Keras' nor registered
    (``keras.utils.register_keras_serializable``, ``custom_objects``) can
    only be rebuilt by code from outside tfmc's control.
    """
    from tfmc._keras import keras

    builtin = _builtin_layer_classes()
    found = []

    def known(name, registered):
        return (name in builtin or name in custom_objects or keras.utils.get_registered_object(name) is not None
                or (registered is not None and keras.utils.get_registered_object(registered) is not None))

    def visit(node, owner):
        if isinstance(node, list):
            for item in node:
                visit(item, owner)
            return
        if not isinstance(node, dict):
            return
        class_name, config = node.get("class_name"), node.get("config")
        name = node.get("name") or (config.get("name") if isinstance(config, dict) else None)
        is_layer = isinstance(class_name, str) and ("trainable" in node or (
            isinstance(config, dict) and ("trainable" in config or "layers" in config)))
        if class_name in ("Lambda", "__lambda__") or node.get("function_type") == "lambda":
            found.append((name or owner, "Lambda" if class_name == "__lambda__" else class_name or "Lambda",
                          "holds Python code that would run"))
        elif is_layer and not known(class_name, node.get("registered_name")):
            found.append((name or owner, class_name, "is of a class that is neither Keras' nor registered"))
        for key, value in node.items():
            if key != "inbound_nodes":
                visit(value, name if is_layer else owner)

    for config in configs:
        visit(config, None)
    unique = []
    for item in found:
        if item not in unique:
            unique.append(item)
    return unique


def check_safe(path, configs, custom_objects=()):
    """Raise ModelLoadError naming the first layer that carries code, and the opt-in; else return None."""
    unsafe = unsafe_layers(configs, custom_objects)
    if unsafe:
        name, class_name, why = unsafe[0]
        more = f" (and {len(unsafe) - 1} more)" if len(unsafe) > 1 else ""
        raise ModelLoadError(
            f"{os.fspath(path)!r} was not loaded: layer {name!r} ({class_name}) {why}{more}; if you trust the "
            f"file's source, load it with {TRUST_HINT}")
