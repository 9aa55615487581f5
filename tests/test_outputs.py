"""The output location is the user's: tfmc never replaces or deletes a file it did not write."""
import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

import tiny_models
import tfmc
from tfmc import amc, cli, io, pipeline  # noqa: F401  amc first: tf-agents prints a Gym notice on import


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root):
    """{relative path: sha256} of every file under ``root``."""
    return {os.path.relpath(os.path.join(d, f), root): hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
            for d, _, files in os.walk(root) for f in files}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return io.save_model(tiny_models.chain_cnn(input_shape=(8, 8, 1)), tmp_path_factory.mktemp("m") / "chain.keras")


def test_a_users_file_with_an_output_name_is_never_replaced(model_path, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.md").write_text("my notes\n")
    before = _digest(out / "summary.md")
    for extra in ([], ["--overwrite"]):
        assert cli.main(["prune", model_path, "--ratios", "0.5", "--out", str(out)] + extra) == 2
        assert capsys.readouterr().err.strip() == (
            f"tfmc prune: error: --out {str(out)!r} holds summary.md, which tfmc did not write and tfmc prune would "
            "replace; move it or choose another folder")
    assert os.listdir(out) == ["summary.md"] and _digest(out / "summary.md") == before
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "policy.json").write_text('{"mine": true}\n')
    assert cli.main(["quantize", model_path, "--target-bops", "0.6", "--data", "digits", "--out",
                     str(tmp_path / "q")]) == 2
    assert "holds policy.json, which tfmc did not write and tfmc quantize would replace" in capsys.readouterr().err


def test_a_folder_of_other_files_needs_overwrite_and_keeps_them(model_path, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.txt").write_text("keep me\n")
    (out / "data").mkdir()
    (out / "data" / "x.csv").write_text("1,2\n")
    before = _tree(out)
    assert cli.main(["prune", model_path, "--ratios", "0.5", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"tfmc prune: error: --out {str(out)!r} holds files that are not a previous tfmc prune run's (data, "
        "thesis.txt); choose an empty or new folder, or pass --overwrite to write beside them (tfmc replaces only "
        "its own files)")
    assert _tree(out) == before
    assert cli.main(["prune", model_path, "--ratios", "0.5", "--out", str(out), "--overwrite"]) == 0
    after = _tree(out)
    assert {k: v for k, v in after.items() if k in before} == before
    assert sorted(set(after) - set(before)) == ["policy.json", "pruned.keras", "summary.md"]
    assert sorted(os.listdir(tmp_path)) == ["mine"]  # no staging folder left beside it


def test_a_previous_run_of_the_same_command_is_replaced(model_path, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["prune", model_path, "--ratios", "0.5", "--out", str(out)]) == 0
    assert cli.main(["prune", model_path, "--ratios", "0.25", "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["policy.json", "pruned.keras", "summary.md"]
    assert set(tfmc.PrunePolicy.from_json(out / "policy.json").keep_ratios.values()) == {0.25}


def test_an_existing_file_out_needs_overwrite_and_must_be_of_the_kind(model_path, tmp_path, capsys):
    notes = tmp_path / "notes.tflite"
    notes.write_text("not a model\n")
    assert cli.main(["export", model_path, "--mode", "float32", "--out", str(notes)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"tfmc export: error: --out {str(notes)!r} already exists; pass --overwrite to replace it")
    assert cli.main(["export", model_path, "--mode", "float32", "--out", str(notes), "--overwrite"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"tfmc export: error: --out {str(notes)!r} is not a .tflite file; tfmc replaces only files of the kind it "
        "writes")
    assert notes.read_text() == "not a model\n"
    assert cli.main(["prune", model_path, "--ratios", "0.5", "--out", model_path]) == 2
    assert capsys.readouterr().err.strip() == (
        f"tfmc prune: error: --out {model_path!r} already exists; pass --overwrite to replace it")
    (tmp_path / "a_file").write_text("x")
    assert cli.main(["prune", model_path, "--target-macs", "0.5", "--data", "digits", "--out",
                     str(tmp_path / "a_file" / "run")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"tfmc prune: error: --out {str(tmp_path / 'a_file' / 'run')!r}: {str(tmp_path / 'a_file')!r} is a file, "
        "so no folder can be made there")


def test_save_model_never_empties_a_folder(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    with pytest.raises(tfmc.OutputError) as err:
        io.save_model(tiny_models.chain_cnn(), folder)
    assert str(err.value) == (f"{str(folder)!r} is a folder that holds other files (notes.txt); a SavedModel replaces "
                              "only an empty folder or an earlier SavedModel")
    assert os.listdir(folder) == ["notes.txt"]
    io.save_model(tiny_models.chain_cnn(), tmp_path / "sm")
    io.save_model(tiny_models.chain_cnn(), tmp_path / "sm")  # an earlier SavedModel is replaced
    assert io.load_model(tmp_path / "sm").name == "chain"


def test_the_demo_replaces_only_a_folder_that_is_wholly_a_demos(tmp_path):
    out = tmp_path / "demo_out"
    (out / "figures").mkdir(parents=True)
    (out / "report.md").write_text("# tfmc demo\n")
    (out / "thesis").mkdir()
    (out / "thesis" / "ch1.tex").write_text("mine\n")
    before = _tree(out)
    with pytest.raises(tfmc.OutputError) as err:
        pipeline._prepare_output(out)
    assert str(err.value) == (f"--out {str(out)!r} holds files that are not a tfmc demo's (thesis); the demo replaces "
                              "its whole --out: choose an empty or new folder")
    assert _tree(out) == before and sorted(os.listdir(tmp_path)) == ["demo_out"]
    (out / "thesis" / "ch1.tex").unlink()
    (out / "thesis").rmdir()
    (tmp_path / ".demo_out.tfmc-staging-killed").mkdir()  # what a killed run leaves
    resolved, staging = pipeline._prepare_output(out)
    assert resolved == str(out) and os.path.isdir(staging)
    assert sorted(os.listdir(tmp_path)) == sorted(["demo_out", os.path.basename(staging)])
    os.rmdir(staging)


def test_an_interrupted_final_save_leaves_the_previous_run(model_path, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert cli.main(["prune", model_path, "--ratios", "0.5", "--out", str(out)]) == 0
    before = _tree(out)

    def interrupted(path, text):
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "write_text", interrupted)  # the last file of the set
    with pytest.raises(KeyboardInterrupt):
        cli.main(["prune", model_path, "--ratios", "0.25", "--out", str(out)])
    assert _tree(out) == before
    assert sorted(os.listdir(tmp_path)) == ["run"]


@pytest.mark.slow  # starts a Python process that imports TensorFlow: make test runs it, make test-fast does not
def test_sigterm_during_the_final_save_leaves_no_temporary_files(model_path, tmp_path):
    out = tmp_path / "run"
    marker = tmp_path / "saving"
    script = (
        "import sys, time, tfmc\nfrom tfmc import cli, io\nsave = io.save_model\n"
        "def slow(model, path):\n    with io.atomic_path(path) as tmp:\n        model.save(tmp)\n"
        "        open(sys.argv[2], 'w').close()\n        time.sleep(120)\n"
        "io.save_model = slow\n"
        "sys.exit(cli.main(['prune', sys.argv[1], '--ratios', '0.5', '--out', sys.argv[3]]))\n")
    proc = subprocess.Popen([sys.executable, "-c", script, model_path, str(marker), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert sorted(os.listdir(tmp_path)) == ["saving"]  # no --out, no staging folder, no .tmp.keras
