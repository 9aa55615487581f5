"""Seeded, bounded fuzzing of every loader and the command line: a clean result or one line and exit 2, never a traceback."""
import zipfile

import numpy as np
import pytest

import tiny_models
import tfmc
from tfmc import cli, data, io

CASES = 12


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    model = tiny_models.chain_cnn(input_shape=(8, 8, 1))
    paths = {"keras": io.save_model(model, root / "m.keras"), "h5": io.save_model(model, root / "m.h5")}
    rng = np.random.default_rng(0)
    np.savez(root / "d.npz", x=rng.random((30, 8, 8, 1)).astype(np.float32), y=np.arange(30) % 10)
    paths["npz"] = str(root / "d.npz")
    return paths


def _damaged(originals, tmp_path, seed):
    """Random bytes, truncations and flipped bytes of the good files, under every extension."""
    rng = np.random.default_rng(seed)
    kind = ["random", "truncated", "flipped"][seed % 3]
    source = open(originals[["keras", "h5", "npz"][seed // 3 % 3]], "rb").read()
    if kind == "random":
        blob = rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8).tobytes()
        blob = source[:int(rng.integers(0, 16))] + blob  # sometimes a real magic number, then noise
    elif kind == "truncated":
        blob = source[:int(rng.integers(0, len(source)))]
    else:
        raw = bytearray(source)
        for i in rng.integers(0, len(raw), 64):
            raw[i] = int(rng.integers(0, 256))
        blob = bytes(raw)
    path = tmp_path / f"fuzz{seed}{['.keras', '.h5', '.npz'][seed % 3]}"
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize("seed", range(CASES))
def test_damaged_model_files_load_or_raise_model_load_error(originals, tmp_path, seed):
    path = _damaged(originals, tmp_path, seed)
    try:
        model = io.load_model(path)
    except tfmc.ModelLoadError as exc:
        assert "\n" not in str(exc).strip()
    else:
        assert model.inputs


@pytest.mark.parametrize("seed", range(CASES))
def test_damaged_data_files_load_or_raise_data_error(originals, tmp_path, seed):
    path = _damaged(originals, tmp_path, seed)
    spec = str(path) if path.suffix == ".npz" else str(path.with_suffix(".npz"))
    path.rename(spec)
    try:
        dataset = data.load(spec)
    except tfmc.DataError as exc:
        assert "\n" not in str(exc).strip()
    else:
        data.check_dataset(dataset, splits=("train",))


@pytest.mark.parametrize("seed", range(CASES))
def test_random_shapes_in_an_npz_are_one_clear_error_or_usable(tmp_path, seed):
    rng = np.random.default_rng(100 + seed)
    shape = tuple(int(d) for d in rng.integers(0, 7, int(rng.integers(0, 6))))
    x = rng.normal(0, 100, shape).astype(rng.choice([np.float32, np.float64, np.int16]))
    y = rng.integers(-2, 12, int(rng.integers(0, 8)))
    np.savez(tmp_path / "shapes.npz", x=x, y=y)
    try:
        dataset = data.load(str(tmp_path / "shapes.npz"), image_size=8, channels=1)
    except tfmc.DataError as exc:
        assert "\n" not in str(exc).strip()
    else:
        data.check_dataset(dataset, splits=("train",))


@pytest.mark.parametrize("seed", range(0, CASES, 2))
def test_the_command_line_gives_one_line_and_exit_2_on_damaged_inputs(originals, tmp_path, capsys, seed):
    path = _damaged(originals, tmp_path, seed)
    code = cli.main(["profile", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 0 or (code == 2 and err.startswith("tfmc profile: error: ") and "\n" not in err), err
    npz = path.with_suffix(".npz")
    path.rename(npz)
    code = cli.main(["prune", originals["keras"], "--ratios", "0.5", "--data", str(npz), "--out",
                     str(tmp_path / "out.keras")])
    err = capsys.readouterr().err.strip()
    assert code == 0 or (code == 2 and err.startswith("tfmc prune: error: ") and "\n" not in err), err
    if code == 2:
        assert not (tmp_path / "out.keras").exists()


def test_a_zip_that_is_not_a_model_is_named(tmp_path):
    with zipfile.ZipFile(tmp_path / "m.keras", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(tfmc.ModelLoadError, match=r"^'.*m.keras' is a zip file without config.json, not a .keras "
                                                  r"model$"):
        io.load_model(tmp_path / "m.keras")
