"""tfmc.runs.RunFolder: fingerprint check, atomic checkpoints, resume, journal, CSV, TensorBoard, plots."""
import json
import os

import numpy as np
import pytest

from tfmc.errors import OutputError
from tfmc.runs import RunFolder, digest


def _folder(path, **fingerprint):
    return RunFolder(path, kind="test search", format="test/1", fingerprint={"seed": 0, **fingerprint}, unit="steps")


def _step(run, done, payload):
    run.append({"step": done, "value": payload})

    def write(directory):
        np.save(os.path.join(directory, "weights.npy"), np.full(3, payload))
        return {"steps_done": done, "payload": payload}

    run.checkpoint(done, write)


def test_a_run_resumes_from_its_last_checkpoint_and_drops_a_torn_row(tmp_path):
    run = _folder(tmp_path)
    assert run.open(resume=False) is None
    for done in (1, 2):
        _step(run, done, done * 10.0)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "ckpt-000002", "history.jsonl"]
    with open(run.journal, "a") as journal:  # as if killed after an append, before its checkpoint
        journal.write('{"step": 3, "val')
    resumed = _folder(tmp_path).open(resume=True)
    assert resumed.state == {"steps_done": 2, "payload": 20.0}
    assert resumed.history == [{"step": 1, "value": 10.0}, {"step": 2, "value": 20.0}]
    np.testing.assert_array_equal(np.load(os.path.join(resumed.directory, "weights.npy")), [20.0] * 3)
    assert len(open(run.journal).read().splitlines()) == 2
    assert json.load(open(run.pointer)) == {"format": "test/1", "latest": "ckpt-000002", "steps_done": 2,
                                            "fingerprint": {"seed": 0}}


def test_a_folder_of_another_run_is_refused_with_the_reason(tmp_path):
    run = _folder(tmp_path, data=digest(np.arange(4)))
    run.open(resume=False)
    _step(run, 1, 1.0)
    with pytest.raises(OutputError, match=r"already holds a test search \(1 steps done\); resume it"):
        _folder(tmp_path, data=digest(np.arange(4))).open(resume=False)
    with pytest.raises(OutputError, match=r"holds a different test search \(it differs in: data, seed\); refusing"):
        _folder(tmp_path, data=digest(np.arange(5)), seed=1).open(resume=True)
    upgraded = RunFolder(tmp_path, kind="test search", format="test/1", unit="steps",
                         fingerprint={"seed": 0, "data": digest(np.arange(4)), "new": 1},
                         upgrade=lambda stored: {**stored, "new": 1})  # a setting added later, at its default
    assert upgraded.open(resume=True).state["steps_done"] == 1
    with pytest.raises(OutputError, match=r"written in format 'test/1' \(this tfmc writes 'test/2'\)"):
        RunFolder(tmp_path, kind="test search", format="test/2", fingerprint={}, unit="steps").open(resume=True)


def test_digest_tells_shape_and_content_apart():
    assert digest(np.zeros(4)) == digest(np.zeros(4))
    assert len({digest(np.zeros(4)), digest(np.zeros((2, 2))), digest(np.ones(4))}) == 3


def test_csv_tensorboard_and_plot(tmp_path):
    run = _folder(tmp_path)
    history = [{"step": 1, "a": 0.5, "b": None}, {"step": 2, "a": 0.75, "b": 2.0}]
    run.write_csv(history, ["step", "a", "b"])
    assert open(run.path("history.csv")).read() == "step,a,b\n1,0.5,\n2,0.75,2.0\n"
    run.scalars(1, {"a": 0.5, "b": None, "c": float("nan")})
    events = os.listdir(run.path("tensorboard"))
    assert len(events) == 1 and events[0].startswith("events.out.tfevents")
    from tfmc._keras import tf

    tags = [v.tag for e in tf.compat.v1.train.summary_iterator(os.path.join(run.path("tensorboard"), events[0]))
            for v in e.summary.value]
    assert tags == ["a"]  # None and NaN are left out
    path = run.plot("ab.png", history, "step", {"a": "a", "b": "b"}, "title", "value")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
