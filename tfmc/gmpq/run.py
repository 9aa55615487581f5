"""A GMPQ search's output folder: its fingerprint, its exact per-epoch state, TensorBoard, CSV and plots.

The folder is a ``tfmc.runs.RunFolder`` counted in epochs. Each checkpoint
holds every variable the next epoch reads: the supernet's weights (bit
logits, activation clips and BatchNorm statistics included), both
optimizers' slots and step counters, the complexity weight cd, and the state
of the supernet's dropout generators; so a search resumed from epoch k
continues exactly as the uninterrupted one would have.
"""
import hashlib
import json
import os

import numpy as np

from tfmc.errors import OutputError
from tfmc.runs import RunFolder, digest

FORMAT = "tfmc.gmpq.search/1"
VARIABLES = "variables.npz"
# journal columns plotted against the epoch, by figure
_LOSSES = {"cross-entropy": "ce", "attribution": "attr", "complexity": "comp"}


def fingerprint(model, x, y, budget, target, settings):
    """Everything that decides a search's course, as JSON: a resume with other values is refused.

    Args:
      model: the float model (its name and weights' digest).
      x, y: the search images and labels (after the ``search_fraction`` subset).
      budget: the search's Budget (space, measure, candidates, and its precision table's contents).
      target: the budget in its measure.
      settings: the search's other arguments (losses, optimizers, shift, seed, batch, replicas).
        The number of epochs is not among them: a finished search may be resumed with more.
    """
    table = None
    if budget.table is not None:
        text = json.dumps({"layers": budget.table.layers, "rest_bytes": budget.table.rest_bytes}, sort_keys=True)
        table = hashlib.sha256(text.encode()).hexdigest()[:16]
    return {
        "model": model.name, "weights": digest(*model.get_weights()), "search_data": digest(x, y),
        "space": budget.space, "measure": budget.measure, "target": float(target), "precision_table": table,
        "candidates": {name: [list(ws), list(acts)] for name, (ws, acts) in budget.candidates.items()},
        **settings,
    }


def open_run(out_dir, fingerprint, resume):
    """The RunFolder of ``out_dir`` and what it resumes (None: a fresh search), or (None, None) without a folder."""
    if out_dir is None:
        return None, None
    run = RunFolder(out_dir, kind="GMPQ search", format=FORMAT, fingerprint=fingerprint, unit="epochs")
    return run, run.open(resume)


def save_variables(variables, directory):
    """Write the values of ``variables`` (in order) into ``directory``."""
    np.savez(os.path.join(directory, VARIABLES), *[np.asarray(v.numpy()) for v in variables])


def restore_variables(variables, directory):
    """Assign the values ``save_variables`` wrote in ``directory`` to ``variables`` (the same list, in order).

    Raises:
      OutputError: the checkpoint holds another number of variables or other shapes (a damaged folder).
    """
    with np.load(os.path.join(directory, VARIABLES)) as stored:
        values = [stored[f"arr_{i}"] for i in range(len(stored.files))]
    shapes = [tuple(v.shape) for v in variables]
    if [tuple(v.shape) for v in values] != shapes:
        raise OutputError(f"{directory}: the checkpoint's {len(values)} variables do not match this search's "
                          f"{len(variables)}; the GMPQ search folder is damaged")
    for variable, value in zip(variables, values):
        variable.assign(value)


def record(run, row, variables, extra_state):
    """Journal one epoch's row, its TensorBoard scalars and the checkpoint after it."""
    run.scalars(row["epoch"], {k: v for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))})
    run.append(row)

    def write(directory):
        save_variables(variables, directory)
        return {"epochs_done": row["epoch"], **extra_state}

    run.checkpoint(row["epoch"], write)


def finish(run, policy, history, measure):
    """The finished search's files: policy.json, history.csv, bits.png and the plots of its history."""
    from tfmc.gmpq import plots

    policy.to_json(run.path("policy.json"))
    if history:
        columns = list(history[0])
        run.write_csv(history, columns)
        run.plot("losses.png", history, "epoch", _LOSSES, "GMPQ search losses (per sample)", "loss")
        run.plot("cost.png", history, "epoch", {"expected": f"expected_{measure}", "argmax": f"argmax_{measure}"},
                 "GMPQ search: cost of the supernet's policy", measure)
        run.plot("exponent.png", history, "epoch", {"p": "p"}, "GMPQ attribution exponent", "p")
    if len(policy):
        plots.plot_bits(policy, run.path("bits.png"))
