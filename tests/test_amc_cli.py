"""`tfmc prune MODEL --target-macs F --data digits --out DIR`: search, apply, fine-tune, save, resume, bad input."""
import json

import pytest

import tiny_models
import tfmc
from tfmc import cli
from tfmc._keras import keras


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("amc_cli") / "chain.keras"
    model = tiny_models.chain_cnn(input_shape=(16, 16, 3))
    model.save(path)
    return str(path), model


@pytest.fixture(scope="module")
def searched(saved_model, tmp_path_factory):
    path, _ = saved_model
    out = tmp_path_factory.mktemp("amc_cli") / "run"
    argv = ["prune", path, "--target-macs", "0.5", "--data", "digits", "--out", str(out), "--episodes", "2",
            "--warmup", "2", "--finetune-epochs", "1", "--calib-images", "64", "--fill-budget",
            "--warmup-actions", "noise", "--search", "ddpg"]
    return cli.main(argv), out, argv


def test_search_applies_fine_tunes_and_saves(searched, saved_model, capsys):
    code, out, _ = searched
    _, model = saved_model
    assert code == 0
    for name in ("best_policy.json", "history.csv", "keep_ratios.png", "rewards.png", "pruned.keras", "summary.md",
                 "checkpoint.json"):
        assert (out / name).exists(), name
    small = keras.models.load_model(out / "pruned.keras")
    policy = json.loads((out / "best_policy.json").read_text())
    assert tfmc.count_macs(small) == policy["metadata"]["macs"] <= 0.5 * tfmc.count_macs(model)
    assert policy["metadata"]["fill_budget"] is True
    assert json.loads((out / "checkpoint.json").read_text())["fingerprint"]["agent"]["warmup_actions"] == "noise"
    assert {name: small.get_layer(name).filters for name in ("conv1", "conv2", "conv3")} == {
        name: policy["metadata"]["kept_channels"][name] for name in ("conv1", "conv2", "conv3")}
    summary = (out / "summary.md").read_text()
    assert "| model | test accuracy | MACs | of original | params | of original |" in summary
    assert "| original | " in summary and "| AMC policy, reconstructed | " in summary
    assert "| AMC policy, fine-tuned 1 epochs | " in summary
    meta = policy["metadata"]  # re-scored on the second half of the validation split, both figures reported
    assert meta["search"] == "ddpg" and 1 <= meta["rescored_policies"] <= 4
    assert (f"second split: reward {meta['rescore_value']:.4f}, accuracy {meta['rescore_accuracy']:.4f}, best of "
            f"{meta['rescored_policies']} re-scored") in summary.splitlines()[0]
    assert len((out / "history.csv").read_text().splitlines()) == 5


def test_resuming_a_finished_search_repeats_its_policy(searched, capsys):
    _, out, argv = searched
    before = json.loads((out / "best_policy.json").read_text())
    assert cli.main(argv + ["--resume"]) == 0
    assert json.loads((out / "best_policy.json").read_text()) == before
    stdout, stderr = capsys.readouterr()
    assert "AMC: 4 episodes" in stdout
    # fine-tuning shows one bar on stderr, not Keras' per-epoch lines
    assert "fine-tuning: 100%|" in stderr and "Epoch 1/1" not in stderr


def test_bad_input_is_one_line_and_exit_code_2(searched, saved_model, tmp_path, capsys):
    _, out, argv = searched
    path, _ = saved_model
    cases = [
        (["prune", path, "--target-macs", "1.5", "--data", "digits", "--out", str(tmp_path / "a")],
         "tfmc prune: error: target_macs must be in (0, 1) (a fraction of the original), got 1.5"),
        (["prune", path, "--target-macs", "0.5", "--out", str(tmp_path / "b")],
         "tfmc prune: error: an AMC search needs --data: its validation split is the reward set"),
        (["prune", path, "--target-macs", "0.5", "--ratios", "0.5", "--data", "digits", "--out", str(tmp_path / "c")],
         "tfmc prune: error: give either --ratios or a budget (--target-macs / --target-params / --target-latency-ms), "
         "not both"),
        (["prune", path, "--target-macs", "0.5", "--data", "digits", "--sigma-decay", "1.5", "--out",
          str(tmp_path / "d")], "tfmc prune: error: --sigma-decay must be in (0, 1], got 1.5"),
        (["prune", path, "--target-macs", "0.5", "--data", "digits", "--search", "annealing", "--out",
          str(tmp_path / "e")], "tfmc prune: error: unknown search 'annealing'; expected one of ddpg, greedy, random"),
        (["prune", path, "--target-macs", "0.5", "--data", "digits", "--rescore-top", "-1", "--out",
          str(tmp_path / "f")], "tfmc prune: error: --rescore-top must be >= 0, got -1"),
        (argv,
         f"tfmc prune: error: {out} already holds an AMC search (4 episodes done); resume it (resume=True, --resume) "
         "or choose another folder"),
        (argv[:2] + ["--target-macs", "0.6"] + argv[4:] + ["--resume"],
         f"tfmc prune: error: {out} holds a different AMC search (it differs in: budget); refusing to resume it"),
    ]
    for args, message in cases:
        assert cli.main(args) == 2, args
        assert capsys.readouterr().err.strip() == message


def test_a_latency_budget_with_a_measured_table_runs_end_to_end(saved_model, tmp_path):
    from tflite_bench.lut import LatencyTable
    from tfmc.amc.budget import CostModel, keep_candidates
    from tfmc.graph import ChannelGraph

    path, model = saved_model
    lut = str(tmp_path / "lut.json")  # measured here, with LiteRT
    assert cli.main(["latency-table", path, "--out", lut, "--grid", "1,0.5", "--runs", "3", "--warmup", "1",
                     "--no-progress"]) == 0
    table = LatencyTable.from_json(lut)
    assert sorted(table.layers) == ["conv1", "conv2", "conv3", "fc1", "logits"]
    assert table.layers["conv2"]["in_channels"] == [8, 16] and table.layers["conv2"]["out_channels"] == [12, 24]
    analysis = ChannelGraph(model)
    cost = CostModel(analysis, "latency", latency=table)
    floor = cost.total({g.name: keep_candidates(g.channels, 0.2)[0] for g in analysis.groups if g.prunable})
    target = (floor + cost.full) / 2
    argv = ["prune", path, "--target-latency-ms", repr(target), "--latency-table", lut,
            "--data", "digits", "--out", str(tmp_path / "run"), "--episodes", "4", "--warmup", "2",
            "--calib-images", "64", "--no-progress", "--search", "greedy"]  # 1 + 4 groups + 1 episodes
    assert cli.main(argv) == 0
    small = keras.models.load_model(tmp_path / "run" / "pruned.keras")
    policy = json.loads((tmp_path / "run" / "best_policy.json").read_text())
    assert policy["metadata"]["budget"]["metric"] == "latency" and policy["metadata"]["search"] == "greedy"
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()[1:]
    assert [row.split(",")[1] for row in history] == ["probe"] * 5 + ["greedy"]
    # the table's latency of the layers of the saved, smaller model: within the budget
    layers = [small.get_layer(n) for n in ("conv1", "conv2", "conv3", "fc1", "logits")]
    predicted = sum(table.latency_ms(layer.name, layer.input.shape[-1], layer.output.shape[-1]) for layer in layers)
    assert predicted == pytest.approx(policy["metadata"]["cost"]) and predicted <= target


def test_the_default_search_is_random_search(saved_model, tmp_path):
    path, _ = saved_model
    argv = ["prune", path, "--target-macs", "0.5", "--data", "digits", "--out", str(tmp_path / "run"),
            "--episodes", "2", "--warmup", "1", "--finetune-epochs", "0", "--calib-images", "32", "--no-progress"]
    assert cli.main(argv) == 0
    policy = json.loads((tmp_path / "run" / "best_policy.json").read_text())
    assert policy["metadata"]["search"] == "random"
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()[1:]
    assert [row.split(",")[1] for row in history] == ["random"] * 3


def test_latency_table_bad_input_is_one_line_and_exit_code_2(saved_model, tmp_path, capsys):
    path, _ = saved_model
    cases = [
        (["--grid", "0.5,1.5"], "tfmc latency-table: error: --grid '0.5,1.5': every fraction must be in (0, 1]"),
        (["--grid", "half"], "tfmc latency-table: error: --grid 'half': expected comma-separated fractions such as "
                             "0.25,0.5,1.0"),
        (["--android"], "tfmc latency-table: error: --android needs --binary: the benchmark_model executable to "
                        "push to the phone"),
        (["--runs", "0"], "tfmc latency-table: error: --runs must be >= 1, got 0"),
    ]
    for extra, message in cases:
        assert cli.main(["latency-table", path, "--out", str(tmp_path / "t.json")] + extra) == 2, extra
        assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "t.json").exists()
