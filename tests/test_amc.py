"""AMC: policy costs and the action wall, the environment's state, masked episodes, seeds, resume, bad input."""
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import tiny_models
import tfmc
from tfmc import amc
from tfmc._keras import keras, tf
from tfmc.amc.budget import ActionWall, CostModel, keep_candidates, make_budget
from tfmc.amc.env import FEATURES, PruningEnv
from tfmc.amc.masked import MaskedModel
from tfmc.prune.reconstruct import sampled_patches
from tfmc.graph import ChannelGraph
from tfmc.policy import PrunePolicy

FAST = dict(episodes=3, warmup=2, progress=False, method="ddpg")


def _reward_set(n=48, seed=3):
    x = tiny_models.images(n, seed=seed)
    return x, np.arange(n) % 10


@pytest.fixture(scope="module")
def residual():
    return tiny_models.residual_cnn()


@pytest.fixture(scope="module")
def chain():
    return tiny_models.chain_cnn()


def _without_time(history):
    return [{k: v for k, v in row.items() if k not in ("seconds", "forward_seconds")} for row in history]


@pytest.mark.parametrize("name", ["chain", "residual", "concat", "depthwise", "se"])
def test_policy_costs_equal_the_pruned_models(name):
    model = tiny_models.ALL[name]()
    analysis = ChannelGraph(model)
    macs, params = CostModel(analysis, "macs"), CostModel(analysis, "params")
    assert (macs.full, params.full) == (tfmc.count_macs(model), tfmc.count_params(model))
    rng = np.random.default_rng(0)
    groups = [g for g in analysis.groups if g.prunable]
    counts = {g.name: int(rng.choice(keep_candidates(g.channels, 0.2))) for g in groups}
    pruned = tfmc.prune(model, {g.name: counts[g.name] / g.channels for g in groups})
    assert macs.total(counts) == tfmc.count_macs(pruned)
    assert params.total(counts) == tfmc.count_params(pruned)


def test_latency_cost_reads_the_table_per_layer(chain):
    calls = []

    def table(layer, cin, cout):
        calls.append(layer)
        return 0.001 * cin * cout

    analysis = ChannelGraph(chain)
    latency = CostModel(analysis, "latency", latency=table)
    # conv1 reads the 3-channel image; fc1 -> logits 20 x 10
    full = 0.001 * (3 * 16 + 16 * 24 + 24 * 32 + 32 * 20 + 20 * 10)
    assert latency.full == pytest.approx(full)
    assert latency.total({"conv2": 8}) == pytest.approx(full - 0.001 * (16 * 16 + 16 * 32))
    assert set(calls) == {"conv1", "conv2", "conv3", "fc1", "logits"}


def test_keep_candidates_are_multiples_of_round_to():
    assert keep_candidates(16, 0.2) == [8, 16]
    assert keep_candidates(44, 0.2) == [8, 16, 24, 32, 40, 44]
    assert keep_candidates(10, 0.2) == [8, 10]  # keep 1.0 keeps all 10 (issue 15: keep 1.0 changes nothing)
    assert keep_candidates(24, 0.5, round_to=1) == list(range(12, 25))


def test_infeasible_budget_names_the_smallest_achievable_value(residual):
    analysis = ChannelGraph(residual)
    with pytest.raises(ValueError, match=r"^target_macs=0\.05 cannot be met: with every prunable group at lbound=0\.2 "
                                         r"the model still costs 391,248 MACs \(0\.315 of the original\); the smallest "
                                         r"achievable target_macs is 0\.316$"):
        make_budget(CostModel(analysis, "macs"), 0.05, 0.2)
    x, y = _reward_set()
    with pytest.raises(ValueError, match=r"the smallest achievable target_params is"):
        amc.search(residual, (x, y), target_params=0.01, **FAST)


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.2])
def test_target_outside_the_unit_interval_is_refused(residual, bad):
    x, y = _reward_set()
    with pytest.raises(ValueError, match=rf"^target_macs must be in \(0, 1\) \(a fraction of the original\), got {bad}$"):
        amc.search(residual, (x, y), target_macs=bad, **FAST)


def test_one_budget_and_a_known_reward_are_required(residual):
    x, y = _reward_set()
    with pytest.raises(ValueError, match="^give exactly one budget: target_macs, target_params or target_latency_ms$"):
        amc.search(residual, (x, y), target_macs=0.5, target_params=0.5, **FAST)
    with pytest.raises(ValueError, match="^target_latency_ms needs latency_table"):
        amc.search(residual, (x, y), target_latency_ms=1.0, **FAST)
    with pytest.raises(ValueError, match=r"^unknown reward 'top5'; expected one of acc, acc_flops, acc_params"):
        amc.search(residual, (x, y), target_macs=0.5, reward="top5", **FAST)


def test_a_model_without_prunable_groups_says_why():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inp)
    x = keras.layers.Flatten(name="flat")(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="flat_net")
    with pytest.raises(ValueError, match=r"^model 'flat_net' has no prunable channel group \(.*conv: flattened by "
                                         r"'flat'.*logits: reaches model output of layer 'logits'"):
        amc.search(model, (np.zeros((4, 8, 8, 3), np.float32), np.zeros(4)), target_macs=0.5, **FAST)


def _walk(env, actions):
    observations, step = [], env.reset()
    observations.append(step.observation)
    for a in actions:
        step = env.step(np.array([a], np.float32))
        observations.append(step.observation)
        if step.is_last():
            break
    return observations, step


def test_state_has_eleven_features_in_the_unit_interval(residual):
    analysis = ChannelGraph(residual)
    cost = CostModel(analysis, "macs")
    env = PruningEnv(analysis, cost, make_budget(cost, 0.6, 0.2), evaluate=lambda counts: 0.5)
    assert env.observation_spec().shape == (11,) and len(FEATURES) == 11
    observations, last = _walk(env, [0.3, 0.9, 0.5])
    states = np.stack(observations)
    assert states.shape == (4, 11) and states.min() >= 0.0 and states.max() <= 1.0
    np.testing.assert_allclose(states[:3, 0], [0.0, 0.5, 1.0])  # t, min-max over the three groups
    np.testing.assert_allclose(states[:3, 1], [(16 - 12) / 12, 0.0, 1.0])  # n: 16, 12, 24 channels
    assert states[0, 8] == 0.0 and states[0, 10] == 1.0  # nothing reduced yet; a_{-1} = 1
    assert states[1, 8] > 0.0 and states[1, 10] == pytest.approx(0.3)  # the first action removed MACs
    assert states[0, 9] > states[1, 9] > states[2, 9] == 0.0  # MACs still to decide shrink to nothing
    assert last.is_last() and last.reward == pytest.approx(0.5)


def test_the_wall_keeps_even_greedy_actions_within_the_budget(residual):
    analysis = ChannelGraph(residual)
    cost = CostModel(analysis, "macs")
    budget = make_budget(cost, 0.5, 0.2)
    env = PruningEnv(analysis, cost, budget, evaluate=lambda counts: 0.0)
    _walk(env, [1.0, 1.0, 1.0])
    episode = env.last_episode
    assert episode["cost"] <= budget.limit
    # stem at 16 would cost 782,416 MACs even with the rest at lbound (limit 620,664); block_a fits whole;
    # proj at 24 would miss by 120 MACs, so it gets 16
    wall = ActionWall(cost, budget, env.groups, 0.2)
    assert wall.max_count({}, "stem") == 8 and wall.max_count({"stem": 8, "block_a": 12}, "proj") == 16
    assert cost.total({"stem": 8, "block_a": 12, "proj": 24}) == budget.limit + 120
    assert episode["counts"] == {"stem": 8, "block_a": 12, "proj": 16}
    assert episode["ratios"] == {"stem": 0.5, "block_a": 1.0, "proj": pytest.approx(16 / 24)}
    pruned = tfmc.prune(residual, PrunePolicy({g: episode["counts"][g] / c for g, c in [("stem", 16), ("block_a", 12), ("proj", 24)]}))
    assert tfmc.count_macs(pruned) == episode["cost"] <= 0.5 * tfmc.count_macs(residual)


def test_sampled_patches_are_the_im2col_rows():
    layer = keras.layers.Conv2D(4, 3, strides=2, padding="same", dilation_rate=1)
    layer.build((None, 7, 7, 5))
    x = np.random.default_rng(0).random((3, 7, 7, 5)).astype("float32")
    rng = np.random.default_rng(1)
    rows = sampled_patches(layer, x, 100, rng)
    full = tf.image.extract_patches(x, [1, 3, 3, 1], [1, 2, 2, 1], [1, 1, 1, 1], "SAME").numpy().reshape(-1, 45)
    np.testing.assert_allclose(np.sort(rows, axis=0), np.sort(full, axis=0))  # 16 positions <= 100: every one
    valid = keras.layers.Conv2D(4, 3, padding="valid")
    valid.build((None, 7, 7, 5))
    picked = sampled_patches(valid, x, 5, np.random.default_rng(2))
    every = tf.image.extract_patches(x, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1], "VALID").numpy().reshape(-1, 45)
    assert picked.shape == (15, 45)
    assert all(np.any(np.all(np.isclose(every, row), axis=1)) for row in picked)


@pytest.mark.parametrize("name", ["residual", "concat", "depthwise"])
def test_the_masked_copy_computes_the_pruned_model(name):
    model = tiny_models.ALL[name]()
    analysis = ChannelGraph(model)
    masked = MaskedModel(model, analysis)
    groups = [g for g in analysis.groups if g.prunable]
    counts = {g.name: keep_candidates(g.channels, 0.2)[0] for g in groups}
    x = tiny_models.images(6)
    masked.apply(counts)
    pruned = tfmc.prune(model, {g.name: counts[g.name] / g.channels for g in groups})
    np.testing.assert_allclose(masked.predict(x), pruned.predict(x, verbose=0), atol=1e-4)
    masked.restore()
    np.testing.assert_allclose(masked.predict(x), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("name", ["chain", "residual", "concat"])
def test_the_refitted_masked_copy_computes_the_model_prune_builds(name):
    model = tiny_models.ALL[name]()
    analysis = ChannelGraph(model)
    calib, x = tiny_models.images(24, seed=3), tiny_models.images(6, seed=4)
    masked = MaskedModel(model, analysis, calib_data=calib)
    groups = [g for g in analysis.groups if g.prunable]
    policies = [{g.name: keep_candidates(g.channels, 0.2)[-1 if i % 2 else 0] for i, g in enumerate(groups)},
                {g.name: keep_candidates(g.channels, 0.2)[0] for g in groups}]
    for counts in policies + policies[:1]:  # the same policy again after another gives the same model
        masked.apply(counts)
        pruned = tfmc.prune(model, {g.name: counts[g.name] / g.channels for g in groups}, calib_data=calib)
        np.testing.assert_allclose(masked.predict(x), pruned.predict(x, verbose=0), atol=1e-4)
    refitted = [n for n in masked._refit if np.any(masked.clone.get_layer(n).get_weights()[0]
                                                    != model.get_layer(n).get_weights()[0])]
    assert refitted  # the comparison above ran with least-squares kernels, not the original ones
    masked.restore()
    np.testing.assert_allclose(masked.predict(x), model.predict(x, verbose=0), atol=1e-5)


def test_refit_kernels_read_nothing_from_dropped_channels(chain):
    analysis = ChannelGraph(chain)
    masked = MaskedModel(chain, analysis, calib_data=tiny_models.images(32))
    masked.apply({"conv2": 8})
    kernel = masked.clone.get_layer("conv3").get_weights()[0]
    dropped = ~masked.masks({"conv2": 8})["conv2"]
    assert np.all(kernel[:, :, dropped, :] == 0) and np.any(kernel[:, :, ~dropped, :] != 0)


def test_the_filling_wall_makes_every_policy_spend_the_budget(residual):
    analysis = ChannelGraph(residual)
    cost = CostModel(analysis, "macs")
    budget = make_budget(cost, 0.5, 0.2)
    env = PruningEnv(analysis, cost, budget, evaluate=lambda counts: 0.0, fill_budget=True)
    wall = env.wall
    for actions in ([0.2, 0.2, 0.2], [0.3, 1.0, 0.2], [1.0, 1.0, 1.0], [0.5, 0.2, 0.6]):
        _walk(env, actions)
        counts = env.last_episode["counts"]
        assert env.last_episode["cost"] <= budget.limit
        last = env.groups[-1].name  # the last group takes the most the budget allows
        assert counts[last] == wall.max_count({k: v for k, v in counts.items() if k != last}, last)
    # min_count is the smallest count that, with every later group whole, reaches the limit
    need = wall.min_count({"stem": 8}, "block_a")
    candidates = wall.candidates["block_a"]
    assert cost.total({"stem": 8, "block_a": need}) >= budget.limit
    below = candidates[candidates.index(need) - 1] if need != candidates[0] else None
    assert below is None or cost.total({"stem": 8, "block_a": below}) < budget.limit
    _walk(env, [0.2, 0.2, 0.2])
    plain = PruningEnv(analysis, cost, budget, evaluate=lambda counts: 0.0)
    _walk(plain, [0.2, 0.2, 0.2])
    assert plain.last_episode["cost"] < env.last_episode["cost"]
    assert plain.last_episode["counts"] == {g.name: wall.candidates[g.name][0] for g in plain.groups}


def test_a_search_with_the_filling_wall_spends_the_budget_in_every_episode(residual):
    x, y = _reward_set()
    paper = amc.search(residual, (x, y), target_macs=0.5, seed=1, **FAST)
    acc = amc.search(residual, (x, y), target_macs=0.5, seed=1, fill_budget=True, **FAST)
    assert paper.policy.metadata["fill_budget"] is False and acc.policy.metadata["fill_budget"] is True
    analysis = ChannelGraph(residual)
    cost = CostModel(analysis, "macs")
    wall = ActionWall(cost, make_budget(cost, 0.5, 0.2), [g for g in analysis.groups if g.prunable], 0.2)
    for row in acc.history:  # no episode could have kept more of its last group
        others = {k: v for k, v in row["channels"].items() if k != "proj"}
        assert row["channels"]["proj"] == wall.max_count(others, "proj")


@pytest.fixture(scope="module")
def uninterrupted(residual, tmp_path_factory):
    out = tmp_path_factory.mktemp("amc") / "whole"
    x, y = _reward_set()
    return amc.search(residual, (x, y), target_macs=0.5, calib_data=tiny_models.images(32, seed=5),
                      out_dir=out, seed=7, episodes=4, warmup=2, progress=False, method="ddpg")


def test_every_episode_meets_the_budget_and_outputs_are_written(uninterrupted, residual):
    result = uninterrupted
    limit = 0.5 * tfmc.count_macs(residual)
    assert len(result.history) == 6 and result.complete
    assert [row["phase"] for row in result.history] == ["warmup"] * 2 + ["explore"] * 4
    assert all(row["macs"] <= limit for row in result.history)
    assert result.best_reward == max(row["reward"] for row in result.history)
    # the reward set's forward pass is timed when a policy is evaluated, and a repeat costs none
    assert all((row["forward_seconds"] > 0) == row["evaluated"] for row in result.history)
    assert all(row["forward_seconds"] < row["seconds"] for row in result.history)
    small = tfmc.prune(residual, result.policy, calib_data=tiny_models.images(32, seed=5))
    assert tfmc.count_macs(small) == result.policy.metadata["macs"] <= limit
    x, y = _reward_set()  # the reward is the reward-set accuracy of the model tfmc.prune builds
    assert result.best_accuracy == np.mean(np.argmax(small.predict(x, verbose=0), -1) == y)
    for name in ("best_policy.json", "history.csv", "keep_ratios.png", "rewards.png", "checkpoint.json"):
        assert os.path.exists(os.path.join(result.out_dir, name)), name
    assert os.listdir(os.path.join(result.out_dir, "tensorboard"))
    saved = json.load(open(os.path.join(result.out_dir, "best_policy.json")))
    assert saved["metadata"]["kept_channels"] == result.policy.metadata["kept_channels"]
    assert saved["metadata"]["budget"] == {"metric": "macs", "target": 0.5, "limit": limit,
                                           "original": float(tfmc.count_macs(residual))}
    lines = open(os.path.join(result.out_dir, "history.csv")).read().splitlines()
    assert lines[0].startswith("episode,phase,reward,accuracy,macs,params") and "keep:block_a" in lines[0]
    assert len(lines) == 7


def test_the_same_seed_gives_the_same_policy(uninterrupted, residual):
    x, y = _reward_set()
    again = amc.search(residual, (x, y), target_macs=0.5, calib_data=tiny_models.images(32, seed=5), seed=7,
                       episodes=4, warmup=2, progress=False, method="ddpg")
    assert again.policy == uninterrupted.policy
    assert _without_time(again.history) == _without_time(uninterrupted.history)


def test_a_stopped_search_resumes_to_the_uninterrupted_result(uninterrupted, residual, tmp_path):
    x, y = _reward_set()
    args = dict(target_macs=0.5, calib_data=tiny_models.images(32, seed=5), out_dir=tmp_path, seed=7, episodes=4,
                warmup=2, progress=False, method="ddpg")
    first = amc.search(residual, (x, y), stop_after=3, **args)
    assert first.episodes_done == 3 and not first.complete
    with pytest.raises(ValueError, match=r"already holds an AMC search \(3 episodes done\); resume it"):
        amc.search(residual, (x, y), **args)
    with pytest.raises(ValueError, match=r"holds a different AMC search \(it differs in: budget, seed\); refusing"):
        amc.search(residual, (x, y), resume=True, **dict(args, seed=8, target_macs=0.6))
    pointer = json.loads((tmp_path / "checkpoint.json").read_text())  # as written before these settings existed
    del pointer["fingerprint"]["fill_budget"], pointer["fingerprint"]["agent"]["warmup_actions"]
    (tmp_path / "checkpoint.json").write_text(json.dumps(pointer))
    with pytest.raises(ValueError, match=r"it differs in: fill_budget\); refusing"):
        amc.search(residual, (x, y), resume=True, fill_budget=True, **args)
    with open(tmp_path / "history.jsonl", "a") as journal:  # as if killed after an append, before its checkpoint
        journal.write('{"episode": 4, "torn": tru')
    resumed = amc.search(residual, (x, y), resume=True, **args)
    assert resumed.complete and resumed.policy == uninterrupted.policy
    assert _without_time(resumed.history) == _without_time(uninterrupted.history)
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 6


_KILLED_RUN = """
import sys
sys.path.insert(0, {tests!r})
import time
import tfmc, numpy as np, tiny_models
from tfmc import amc
from tfmc.runs import RunFolder
checkpoint = RunFolder.checkpoint
def slow_checkpoint(*args, **kwargs):  # leaves the test time to see each count before the run can finish
    checkpoint(*args, **kwargs)
    time.sleep(0.3)
RunFolder.checkpoint = slow_checkpoint
x = tiny_models.images(48, seed=3)
amc.search(tiny_models.residual_cnn(), (x, np.arange(48) % 10), target_macs=0.5,
           calib_data=tiny_models.images(32, seed=5), out_dir={out!r}, seed=7, episodes=4, warmup=2, progress=False,
           method="ddpg")
"""


def test_a_killed_search_resumes_to_the_uninterrupted_result(uninterrupted, residual, tmp_path):
    script = _KILLED_RUN.format(tests=os.path.dirname(os.path.abspath(__file__)), out=str(tmp_path))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = tmp_path / "checkpoint.json"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if pointer.exists() and json.loads(pointer.read_text())["episodes_done"] >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the search ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done = json.loads(pointer.read_text())["episodes_done"]
    assert 3 <= done < 6
    x, y = _reward_set()
    resumed = amc.search(residual, (x, y), target_macs=0.5, calib_data=tiny_models.images(32, seed=5),
                         out_dir=tmp_path, seed=7, episodes=4, warmup=2, progress=False, resume=True, method="ddpg")
    assert resumed.policy == uninterrupted.policy
    assert _without_time(resumed.history) == _without_time(uninterrupted.history)


def test_a_nan_reward_gets_the_worst_reward_and_the_search_goes_on(residual):
    x, y = _reward_set()
    calls = []

    def metric(y_true, logits):
        calls.append(1)
        return float("nan") if len(calls) == 2 else float(np.mean(np.argmax(logits, -1) == y_true)) + len(calls)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = amc.search(residual, (x, y), target_macs=0.5, reward=metric, seed=1, episodes=2, warmup=2,
                            progress=False, method="ddpg")
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert messages == ["AMC episode 2: the reward was nan; it gets the worst reward "
                        f"{result.history[0]['reward']:.6g} and the search goes on"]
    assert [row["reward_was_nan"] for row in result.history] == [False, True, False, False]
    assert result.history[1]["reward"] == result.history[0]["reward"]
    assert result.best_episode == 4 and len(calls) == 4


def test_the_numpy_actor_computes_the_tf_agents_actor(residual):
    analysis = ChannelGraph(residual)
    cost = CostModel(analysis, "macs")
    env = PruningEnv(analysis, cost, make_budget(cost, 0.5, 0.2), evaluate=lambda counts: 0.0)
    agent = amc.AmcAgent(env.observation_spec(), env.action_spec(), amc.AgentConfig(), seed=3)
    agent.remember([(np.full(11, 0.5, np.float32), 0.3, np.full(11, 0.6, np.float32), True)] * 70, 0.9)
    agent.learn(2)  # the copy follows training
    observations = np.random.default_rng(0).random((5, 11)).astype("float32")
    reference = agent.ddpg._actor_network(observations, step_type=(), training=False)[0].numpy().reshape(-1)
    np.testing.assert_allclose([agent.actor_action(o) for o in observations], reference, rtol=1e-5)
    assert np.all((0.2 <= reference) & (reference <= 1.0))


def test_warm_up_actions_are_uniform_or_the_papers_noise_around_the_actor(residual):
    from tfmc.amc.agent import truncated_normal

    analysis = ChannelGraph(residual)
    cost = CostModel(analysis, "macs")
    env = PruningEnv(analysis, cost, make_budget(cost, 0.5, 0.2), evaluate=lambda counts: 0.0)
    observation = np.full(11, 0.5, np.float32)
    uniform = amc.AmcAgent(env.observation_spec(), env.action_spec(), amc.AgentConfig(), seed=3)
    noise = amc.AmcAgent(env.observation_spec(), env.action_spec(), amc.AgentConfig(warmup_actions="noise"), seed=3)
    draws = np.random.default_rng(3)
    assert uniform.act(observation, episode=0, warmup=100) == draws.uniform(uniform.low, uniform.high)
    draws = np.random.default_rng(3)
    assert noise.act(observation, episode=0, warmup=100) == truncated_normal(
        draws, noise.actor_action(observation), 0.5, noise.low, noise.high)
    assert noise.sigma(0, 100) == noise.sigma(99, 100) == 0.5  # no decay before learning starts
    assert noise.sigma(100, 100) == 0.5 and noise.sigma(102, 100) == pytest.approx(0.5 * 0.95 ** 2)
    floored = amc.AmcAgent(env.observation_spec(), env.action_spec(), amc.AgentConfig(sigma_min=0.1), seed=3)
    assert floored.sigma(131, 100) == pytest.approx(0.5 * 0.95 ** 31)  # 0.102: still decaying
    assert floored.sigma(132, 100) == floored.sigma(400, 100) == 0.1  # 0.5 * 0.95 ** 32 = 0.097: the floor
    with pytest.raises(ValueError, match=r"sigma_min must be in \[0, sigma=0.5\], got 0.6"):
        amc.AgentConfig(sigma_min=0.6)
    with pytest.raises(ValueError, match="warmup_actions must be 'uniform' or 'noise', got 'gauss'"):
        amc.AgentConfig(warmup_actions="gauss")
    with pytest.raises(ValueError, match="learn_from must be 'applied' or 'proposed', got 'raw'"):
        amc.AgentConfig(learn_from="raw")


def test_transitions_record_the_applied_or_the_proposed_action(residual, tmp_path):
    x, y = _reward_set()
    actions = {}
    for learn_from in ("applied", "proposed"):
        amc.search(residual, (x, y), target_macs=0.4, seed=4, episodes=1, warmup=2, progress=False, method="ddpg",
                   out_dir=tmp_path / learn_from, agent_config=amc.AgentConfig(learn_from=learn_from))
        pointer = json.loads((tmp_path / learn_from / "checkpoint.json").read_text())
        with np.load(tmp_path / learn_from / pointer["latest"] / "replay.npz") as replay:
            actions[learn_from] = replay["action"][:6, 0]  # the two warm-up episodes, three groups each
    draws = np.random.default_rng(4)  # the agent's generator: warm-up actions are its first draws
    proposed = np.float32([draws.uniform(np.float32(0.2), np.float32(1.0)) for _ in range(6)])
    np.testing.assert_array_equal(actions["proposed"], proposed)
    walled = actions["applied"] != actions["proposed"]
    assert walled.any() and np.all(actions["applied"][walled] < actions["proposed"][walled])


def test_calibration_images_beyond_one_fitting_batch_are_cut_with_a_warning(chain, monkeypatch):
    from tfmc.amc import masked as masked_module

    largest = 16 * 16 * 16  # chain_cnn's largest activation per image (16x16, 16 channels)
    assert masked_module.fitting_batch_limit(chain, 16 * largest * 10) == 10
    monkeypatch.setattr(masked_module, "_FIT_BYTES", 16 * largest * 10)
    with pytest.warns(RuntimeWarning, match=r"first 10 of the 32 calibration images .* give tfmc.prune those 10"):
        masked = MaskedModel(chain, ChannelGraph(chain), calib_data=tiny_models.images(32))
    assert masked._calib.shape[0] == 10


def test_the_batch_baseline_follows_the_sampled_batches(residual):
    analysis = ChannelGraph(residual)
    cost = CostModel(analysis, "macs")
    env = PruningEnv(analysis, cost, make_budget(cost, 0.5, 0.2), evaluate=lambda counts: 0.0)
    config = amc.AgentConfig(baseline="batch", batch_size=4)
    agent = amc.AmcAgent(env.observation_spec(), env.action_spec(), config, seed=0)
    obs = np.full(11, 0.5, np.float32)
    agent.remember([(obs, 0.3, obs, False)] * 3, 0.9)
    agent.remember([(obs, 0.4, obs, True)] * 3, 0.3)
    assert agent.baseline == 0.9  # the first reward, until a batch is drawn
    state = agent.rng.bit_generator.state
    agent.learn(3)
    agent.rng.bit_generator.state = state  # draw the same batches again to compute the expected average
    means = [agent.buffer.sample(agent.rng, 4)[2].mean() for _ in range(3)]
    expected = means[0]
    for m in means[1:]:
        expected += 0.5 * (m - expected)
    assert agent.baseline == pytest.approx(expected)
    with pytest.raises(ValueError, match="baseline must be 'episode' or 'batch', got 'bogus'"):
        amc.AgentConfig(baseline="bogus")


def test_the_reward_is_scored_with_the_criterion_the_policy_records_and_prune_applies(residual):
    x, y = _reward_set()
    result = amc.search(residual, (x, y), target_macs=0.5, seed=2, importance="random", **FAST)
    assert result.policy.metadata["importance"] == {"name": "random", "seed": 0}
    pruned, details = tfmc.prune(residual, result.policy, return_details=True)  # no criterion given: the policy's
    analysis = ChannelGraph(residual)
    masks = MaskedModel(residual, analysis, importance="random").masks(result.policy.metadata["kept_channels"])
    assert all(np.array_equal(masks[g], details["keep"][g]) for g in masks)
    l1 = MaskedModel(residual, analysis).masks(result.policy.metadata["kept_channels"])
    assert any(not np.array_equal(masks[g], l1[g]) for g in masks)  # the criterion mattered
    accuracy = float(np.mean(np.argmax(pruned.predict(x, verbose=0), -1) == y))
    assert result.best_accuracy == pytest.approx(accuracy, abs=1e-9)
