"""A search's run folder: input fingerprint, atomic checkpoints, resume, a journal, CSV, TensorBoard and plots.

Any iterative search (AMC's episodes, a GMPQ search's steps) keeps its
outputs in one ``RunFolder``:

- ``checkpoint.json``, the pointer: the folder's format, the fingerprint of
  the run's inputs, how many steps are done and which ``ckpt-NNNNNN`` folder
  holds their state. It is replaced atomically after the checkpoint folder
  it names is complete, so a kill at any moment leaves one whole checkpoint.
- ``history.jsonl``, the journal: one JSON row per step, appended (its cost
  does not grow with the run). The checkpoint says how many rows count; a
  row a killed run appended after its last checkpoint is dropped on resume.
- ``history.csv`` (flattened rows, rewritten now and then), ``tensorboard/``
  (scalars per step) and PNG plots of the journal's columns.

A folder that already holds a run is resumed only when asked, and only when
the fingerprint of the new call's inputs equals the stored one; otherwise the
error names the inputs that differ.

Example:
  >>> run = RunFolder("out", kind="AMC search", format="tfmc.amc.search/2", fingerprint={"seed": 0})
  >>> resumed = run.open(resume=False)  # None: a fresh run
  >>> run.append({"episode": 1, "reward": 0.9})
  >>> run.checkpoint(1, lambda directory: {"episodes_done": 1})
"""
import csv
import hashlib
import io as text_io
import json
import math
import os
import shutil

import numpy as np

from tfmc import io as tfmc_io
from tfmc.errors import OutputError

POINTER = "checkpoint.json"
JOURNAL = "history.jsonl"
STATE = "state.json"
_CHECKPOINT_PREFIX = "ckpt-"


def digest(*arrays):
    """A short SHA-256 of arrays' shapes and bytes: a fingerprint entry for data or weights."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _article(kind):
    """"a" or "an" before ``kind`` (by its first letter: "an AMC search", "a GMPQ search")."""
    return "an" if kind[:1].lower() in "aeiou" else "a"


class Resumed:
    """What ``RunFolder.open`` read back: the checkpoint's folder, its state and the journal rows it covers."""

    def __init__(self, directory, state, history):
        self.directory = directory
        self.state = state
        self.history = history


class RunFolder:
    """One run's output folder (see the module docstring for what it holds).

    Args:
      path: the folder (created if missing).
      kind: what runs in it, for messages ("AMC search").
      format: the layout version written into the pointer; a folder of
        another format is refused on resume.
      fingerprint: JSON-able dict of everything that determines the run
        (data digests, settings, seed). A resume with a different one is
        refused, naming the keys that differ.
      unit: what a step is called ("episodes"): the pointer stores
        ``<unit>_done`` and messages count in it.
      upgrade: optional function applied to a stored fingerprint before the
        comparison, to give settings added later their default values.

    Raises (from ``open``):
      OutputError: the folder holds a run and ``resume`` is False; it holds a
        run of another format or other inputs; or its journal is damaged.
    """

    def __init__(self, path, *, kind, format, fingerprint, unit="episodes", upgrade=None):
        self.dir = os.fspath(path)
        os.makedirs(self.dir, exist_ok=True)
        self.kind = kind
        self.format = format
        self.fingerprint = fingerprint
        self.unit = unit
        self.upgrade = upgrade
        self._writer = None

    def path(self, name):
        """The path of ``name`` inside the folder."""
        return os.path.join(self.dir, name)

    @property
    def pointer(self):
        return self.path(POINTER)

    @property
    def journal(self):
        return self.path(JOURNAL)

    def read_pointer(self):
        """The pointer's JSON, or None when the folder holds no checkpoint yet."""
        if not os.path.exists(self.pointer):
            return None
        with open(self.pointer, encoding="utf-8") as f:
            return json.load(f)

    def open(self, resume):
        """Check the folder against this run; return ``Resumed`` to continue, or None for a fresh start."""
        pointer = self.read_pointer()
        if pointer is None:
            if os.path.exists(self.journal):
                os.remove(self.journal)  # left by a run killed before its first checkpoint
            return None
        done = pointer.get(f"{self.unit}_done")
        if not resume:
            raise OutputError(f"{self.dir} already holds {_article(self.kind)} {self.kind} ({done} {self.unit} done); "
                             "resume it (resume=True, --resume) or choose another folder")
        if pointer.get("format") != self.format:
            raise OutputError(f"{self.dir} holds {_article(self.kind)} {self.kind} written in format {pointer.get('format')!r} "
                             f"(this tfmc writes {self.format!r}); it cannot be resumed: choose another folder")
        stored = pointer.get("fingerprint") or {}
        if self.upgrade is not None:
            stored = self.upgrade(stored)
        differs = sorted(k for k in set(self.fingerprint) | set(stored) if self.fingerprint.get(k) != stored.get(k))
        if differs:
            raise OutputError(f"{self.dir} holds a different {self.kind} (it differs in: {', '.join(differs)}); "
                             "refusing to resume it")
        return self._load(pointer)

    def _load(self, pointer):
        directory = self.path(pointer["latest"])
        with open(os.path.join(directory, STATE), encoding="utf-8") as f:
            state = json.load(f)
        done = pointer[f"{self.unit}_done"]
        with open(self.journal, encoding="utf-8") as f:
            history = [json.loads(line) for line, _ in zip(f, range(done))]
        if len(history) != done:
            raise OutputError(f"{self.journal} holds {len(history)} {self.unit} but the checkpoint has {done}; "
                             f"the {self.kind} folder is damaged")
        # a run killed between its append and its checkpoint left one more line: drop it
        tfmc_io.write_text(self.journal, "".join(json.dumps(row) + "\n" for row in history))
        return Resumed(directory, state, history)

    def append(self, row):
        """Add one step's row to the journal (the next checkpoint makes it count)."""
        with open(self.journal, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def checkpoint(self, done, write):
        """Write the checkpoint after ``done`` steps, then point at it; older checkpoints are removed.

        Args:
          done: steps finished (the journal rows that count).
          write: function(folder) -> JSON-able state: writes any files of
            the state into the (temporary) checkpoint folder and returns the
            rest, stored as its state.json.
        """
        name = f"{_CHECKPOINT_PREFIX}{done:06d}"
        final = self.path(name)
        tmp = final + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        tfmc_io.write_json(os.path.join(tmp, STATE), write(tmp))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        tfmc_io.write_json(self.pointer, {"format": self.format, "latest": name, f"{self.unit}_done": done,
                                          "fingerprint": self.fingerprint})
        for entry in os.listdir(self.dir):
            if entry.startswith(_CHECKPOINT_PREFIX) and entry != name:
                shutil.rmtree(self.path(entry), ignore_errors=True)

    def scalars(self, step, values):
        """TensorBoard scalars of one step under ``tensorboard/``; None and non-finite values are left out."""
        from tfmc._keras import tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.path("tensorboard"))
        with self._writer.as_default():
            for name, value in values.items():
                if value is not None and math.isfinite(value):
                    tf.summary.scalar(name, value, step=step)
        self._writer.flush()

    def write_csv(self, rows, columns, name="history.csv"):
        """Rewrite ``name`` (atomically) with one line per flat dict of ``rows``, in ``columns`` order."""
        buffer = text_io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        tfmc_io.write_text(self.path(name), buffer.getvalue())

    def plot(self, name, history, x, columns, title, ylabel):
        """A line plot ``name`` of journal ``columns`` over column ``x``; a column's None values are gaps.

        ``columns`` maps a legend label to a column name. Rows without any
        value of a column draw nothing for it.
        """
        from tfmc import report

        steps = [row[x] for row in history]
        series = {label: [np.nan if row.get(column) is None else row[column] for row in history]
                  for label, column in columns.items()}
        series = {label: values for label, values in series.items() if not all(np.isnan(values))}
        return report.plot_series(self.path(name), steps, series, title, x, ylabel)
