"""Where a command's outputs go: the user's files there are never replaced or deleted.

A command names the entries it writes in its --out folder, each with a test
that recognises tfmc's own file by its content (a saved model, a policy JSON,
a summary that starts with tfmc's table). A non-empty folder is accepted as a
previous run of the same command when every entry is such a file, or with
``overwrite``; even then a same-named file that tfmc did not write is never
replaced. The output set is built in a staging folder beside --out and moved
in when the run succeeds, so an interrupted run leaves the previous state.
"""
import contextlib
import fnmatch
import json
import os
import shutil
import tempfile

from tfmc import io
from tfmc.errors import OutputError

_STAGING = ".tfmc-staging-"


def _listing(names, limit=3):
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_writable(path):
    """Raise OutputError unless ``path`` (existing or to be created) can be written."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise OutputError(f"--out {path!r}: {existing!r} is a file, so no folder can be made there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"--out {path!r}: {existing!r} is not writable")


def _owner_test(outputs, entry):
    for pattern, is_ours in outputs.items():
        if fnmatch.fnmatch(entry, pattern):
            return is_ours
    return None


def claim_folder(out, command, outputs, *, overwrite=False):
    """Check that the folder ``out`` may receive ``command``'s outputs, before any work is done.

    Args:
      out: the --out folder (created later, when something is written).
      command: the command's name for messages, e.g. "tfmc quantize".
      outputs: {entry name or fnmatch pattern: callable(path) -> bool}, the
        entries the command writes there and how to tell that an existing
        one is tfmc's.
      overwrite: accept a folder that holds other files too; they are left
        alone.

    Raises:
      OutputError: ``out`` is a file or not writable; it holds an entry of
        ``outputs`` that tfmc did not write; or, without ``overwrite``, it
        holds anything else (it is not a previous run of ``command``).
    """
    out = os.fspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"--out {out!r} is a file; {command} writes a folder there")
    check_writable(out)
    remove_stale_staging(out)
    entries = os.listdir(out) if os.path.isdir(out) else []
    tests = {entry: _owner_test(outputs, entry) for entry in entries}
    clashes = [e for e, is_ours in tests.items() if is_ours is not None and not is_ours(os.path.join(out, e))]
    if clashes:
        raise OutputError(f"--out {out!r} holds {_listing(clashes)}, which tfmc did not write and {command} would "
                          "replace; move it or choose another folder")
    foreign = [e for e, is_ours in tests.items() if is_ours is None]
    if foreign and not overwrite:
        raise OutputError(f"--out {out!r} holds files that are not a previous {command} run's ({_listing(foreign)}); "
                          "choose an empty or new folder, or pass --overwrite to write beside them (tfmc replaces "
                          "only its own files)")


def _staging_prefix(out):
    return f".{os.path.basename(os.path.abspath(out))}{_STAGING}"


def remove_stale_staging(out):
    """Remove staging folders that a killed run of this --out left beside it."""
    parent = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(parent):
        for entry in os.listdir(parent):
            if entry.startswith(_staging_prefix(out)):
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def staging_folder(out):
    """A new, empty staging folder beside ``out`` that ``remove_stale_staging`` recognises if a killed run leaves it."""
    out = os.path.abspath(os.fspath(out))
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=_staging_prefix(out), dir=parent)


@contextlib.contextmanager
def staged(out):
    """Yield a staging folder beside ``out``; on success move its entries into ``out``.

    A failure or interruption inside the block removes the staging folder
    and leaves ``out`` as it was. Each entry replaces only a same-named
    entry, which ``claim_folder`` has established is tfmc's own.

    Example:
      >>> out = os.path.join(tmp_dir, "run")
      >>> with staged(out) as folder:
      ...     _ = tfmc.PrunePolicy({"conv1": 0.5}).to_json(os.path.join(folder, "policy.json"))
      >>> os.listdir(out), sorted(os.listdir(tmp_dir))  # moved in; no staging folder left
      (['policy.json'], ['run'])
    """
    out = os.path.abspath(os.fspath(out))
    staging = staging_folder(out)
    try:
        yield staging
        os.makedirs(out, exist_ok=True)
        for entry in sorted(os.listdir(staging)):
            source, target = os.path.join(staging, entry), os.path.join(out, entry)
            if os.path.isdir(source):
                io.replace_dir(source, target)
            else:
                os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def claim_file(path, kind, is_kind, *, overwrite=False):
    """Check that the file ``path`` may be written: new, or with ``overwrite`` an existing file of ``kind``.

    Args:
      path: the --out file.
      kind: what the command writes, in words ("model", ".tflite", "latency table").
      is_kind: callable(path) -> bool, whether an existing file holds that kind.
      overwrite: allow replacing an existing file of that kind.

    Raises:
      OutputError: ``path`` is a folder, cannot be written, exists without
        ``overwrite``, or exists and is not a file of ``kind``.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise OutputError(f"--out {path!r} is a folder; expected a {kind} file to write")
    check_writable(os.path.dirname(os.path.abspath(path)))
    if os.path.exists(path):
        if not overwrite:
            raise OutputError(f"--out {path!r} already exists; pass --overwrite to replace it")
        if not is_kind(path):
            raise OutputError(f"--out {path!r} is not a {kind} file; tfmc replaces only files of the kind it writes")


def is_model_file(path):
    """Whether ``path`` holds a saved Keras model (.keras zip or HDF5), judged by content."""
    from tfmc import model_files
    from tfmc.errors import ModelLoadError

    try:
        return model_files.model_format(path) in ("keras", "h5")
    except ModelLoadError:
        return False


def is_tflite_file(path):
    """Whether ``path`` holds a TFLite flatbuffer (file identifier "TFL3")."""
    with open(path, "rb") as f:
        return f.read(8)[4:8] == b"TFL3"


def is_json(test):
    """A check that a file holds JSON for which ``test(value)`` is true (how tfmc's JSON outputs are recognised)."""
    def check(path):
        try:
            with open(path, encoding="utf-8") as f:
                return bool(test(json.load(f)))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return False
    return check


def is_policy(kind):
    """A check for a tfmc policy JSON of ``kind`` ("prune" or "bits")."""
    return is_json(lambda value: isinstance(value, dict) and value.get("kind") == kind)


def starts_with(prefix):
    """A check for a text file that starts with ``prefix`` (tfmc's summaries start with their table or header)."""
    def check(path):
        try:
            with open(path, encoding="utf-8") as f:
                return f.read(len(prefix)) == prefix
        except (OSError, UnicodeDecodeError):
            return False
    return check


def is_matplotlib_png(path):
    """Whether ``path`` is a PNG written by matplotlib (tfmc's plots)."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return False
    return head.startswith(b"\x89PNG\r\n\x1a\n") and b"Matplotlib" in head


def is_folder(path):
    """Whether ``path`` is a folder (AMC's checkpoints and TensorBoard logs, inside a recognised run)."""
    return os.path.isdir(path)
