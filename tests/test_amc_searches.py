"""AMC searchers and what a search reports: DDPG diagnostics, random and greedy baselines, re-scoring, strategy, bad input."""
import json
import os

import numpy as np
import pytest

import tiny_models
import tfmc
from tfmc import amc
from tfmc._keras import tf
from tfmc.amc.budget import CostModel, make_budget
from tfmc.amc.env import PruningEnv
from tfmc.amc.searchers import walk
from tfmc.graph import ChannelGraph

CALIB = dict(calib_data=tiny_models.images(32, seed=5))


def _set(n=48, seed=3):
    return tiny_models.images(n, seed=seed), np.arange(n) % 10


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


@pytest.fixture(scope="module")
def residual():
    return tiny_models.residual_cnn()


@pytest.fixture(scope="module")
def diagnosed(residual, tmp_path_factory):
    out = tmp_path_factory.mktemp("amc") / "ddpg"
    return amc.search(residual, _set(), target_macs=0.5, seed=2, episodes=4, warmup=2, actor_every=2, out_dir=out,
                      progress=False, method="ddpg", **CALIB)


def test_every_learning_episode_records_the_diagnostics(diagnosed, residual):
    history = diagnosed.history
    assert [row["phase"] for row in history] == ["warmup", "warmup", "explore", "actor", "explore", "actor"]
    groups = [g.name for g in ChannelGraph(residual).groups if g.prunable]
    for row in history:
        assert list(row["actor_keep"]) == groups and all(0.2 <= v <= 1.0 for v in row["actor_keep"].values())
        learnt = row["phase"] != "warmup"
        for key in ("loss", "critic_loss", "actor_loss", "mean_q"):
            assert (row[key] is not None and np.isfinite(row[key])) == learnt, (key, row["phase"])
        assert row["sigma"] == {"warmup": None, "actor": 0.0, "explore": row["sigma"]}[row["phase"]]
    assert history[2]["sigma"] == 0.5 and history[4]["sigma"] == pytest.approx(0.5 * 0.95 ** 2)
    assert history[2]["loss"] == pytest.approx(history[2]["critic_loss"] + history[2]["actor_loss"], rel=1e-5)
    out = diagnosed.out_dir
    for name in ("diagnostics.png", "actor_keep.png", "actor_rewards.png"):
        assert os.path.exists(os.path.join(out, name)), name
    header = open(os.path.join(out, "history.csv")).readline()
    assert "critic_loss,actor_loss,mean_q" in header
    events = os.path.join(out, "tensorboard")
    tags = {v.tag for f in os.listdir(events) for e in tf.compat.v1.train.summary_iterator(os.path.join(events, f))
            for v in e.summary.value}
    assert {"critic_loss", "actor_loss", "mean_q", "sigma", "actor_reward", f"actor_keep/{groups[0]}"} <= tags


def test_the_actor_episode_proposes_the_actors_keep_ratios(residual, tmp_path):
    result = amc.search(residual, _set(), target_macs=0.5, seed=2, episodes=2, warmup=2, actor_every=2,
                        out_dir=tmp_path, progress=False, method="ddpg",
                        agent_config=amc.AgentConfig(learn_from="proposed"))
    pointer = json.loads((tmp_path / "checkpoint.json").read_text())
    with np.load(tmp_path / pointer["latest"] / "replay.npz") as replay:
        proposed = replay["action"][9:12, 0]  # the fourth episode, three groups
    assert result.history[3]["phase"] == "actor"
    np.testing.assert_allclose(proposed, list(result.history[3]["actor_keep"].values()), rtol=1e-6)


def test_a_diagnosed_search_resumes_to_the_same_diagnostics(diagnosed, residual, tmp_path):
    args = dict(target_macs=0.5, seed=2, episodes=4, warmup=2, actor_every=2, out_dir=tmp_path, progress=False,
                method="ddpg", **CALIB)
    amc.search(residual, _set(), stop_after=3, **args)
    resumed = amc.search(residual, _set(), resume=True, **args)
    strip = lambda history: [{k: v for k, v in row.items() if k not in ("seconds", "forward_seconds")}  # noqa: E731
                             for row in history]
    assert strip(resumed.history) == strip(diagnosed.history) and resumed.policy == diagnosed.policy


def test_random_search_draws_uniform_ratios_through_the_same_wall(residual):
    result = amc.search(residual, _set(), target_macs=0.4, seed=5, episodes=3, warmup=2, method="random",
                        progress=False)
    analysis = ChannelGraph(residual)
    cost = CostModel(analysis, "macs")
    budget = make_budget(cost, 0.4, 0.2)
    env = PruningEnv(analysis, cost, budget, evaluate=lambda counts: 0.0)
    draws = np.random.default_rng(5)
    expected = []
    for _ in range(5):
        walk(env, lambda t, observation: float(draws.uniform(0.2, 1.0)))
        expected.append(env.last_episode["counts"])
    assert [row["channels"] for row in result.history] == expected
    assert [row["phase"] for row in result.history] == ["random"] * 5
    assert all(row["macs"] <= budget.limit for row in result.history)
    assert result.policy.metadata["search"] == "random" and result.method == "random"


def test_greedy_probes_each_group_alone_then_allocates_within_the_budget(residual):
    x, y = _set()
    result = amc.search(residual, (x, y), target_macs=0.5, seed=0, episodes=6, warmup=2, method="greedy",
                        progress=False, **CALIB)
    analysis = ChannelGraph(residual)
    groups = {g.name: g.channels for g in analysis.groups if g.prunable}
    probes = [row for row in result.history if row["phase"] == "probe"]
    assert probes[0]["channels"] == groups and probes[0]["reward"] == _accuracy(residual, x, y)
    for row in probes[1:]:  # one group pruned, scored as the model tfmc.prune builds
        changed = [g for g, c in row["channels"].items() if c != groups[g]]
        assert len(changed) == 1
        alone = tfmc.prune(residual, {changed[0]: row["channels"][changed[0]] / groups[changed[0]]}, **CALIB)
        assert row["reward"] == _accuracy(alone, x, y)
    final = result.history[-1]
    assert final["phase"] == "greedy" and len(result.history) == len(probes) + 1
    limit = 0.5 * tfmc.count_macs(residual)
    assert final["macs"] <= limit and result.best_episode == final["episode"]
    assert result.policy.metadata["kept_channels"] == final["channels"]
    # the allocation is maximal: no group can go up to a count it was probed at and still fit the budget
    cost = CostModel(analysis, "macs")
    probed = {g: sorted({groups[g]} | {r["channels"][g] for r in probes}) for g in groups}
    for g, counts in probed.items():
        higher = [c for c in counts if c > final["channels"][g]]
        if higher:
            assert cost.total(dict(final["channels"], **{g: higher[0]})) > limit, g
    with pytest.raises(ValueError, match=r"^the greedy search needs at least 5 episodes \(warm-up included\) for 3 "
                                         r"groups: one unpruned, one per group, one allocation; got 4$"):
        amc.search(residual, (x, y), target_macs=0.5, episodes=2, warmup=2, method="greedy", progress=False)


def test_rescoring_chooses_the_best_of_the_top_policies_on_the_second_set(residual):
    x, y = _set()
    x2, y2 = _set(64, seed=11)
    result = amc.search(residual, (x, y), target_macs=0.5, seed=3, episodes=4, warmup=3, rescore_data=(x2, y2),
                        rescore_top=3, progress=False, method="ddpg", **CALIB)
    rescored = result.rescored
    assert len(rescored) == 3 and [r["reward"] for r in rescored] == sorted((r["reward"] for r in rescored), reverse=True)
    by_episode = {row["episode"]: row for row in result.history}
    assert len({json.dumps(by_episode[r["episode"]]["channels"], sort_keys=True) for r in rescored}) == 3
    assert rescored[0]["reward"] == max(row["reward"] for row in result.history)
    chosen = max(rescored, key=lambda r: (r["rescore_reward"], r["reward"]))
    assert result.best_episode == chosen["episode"] and result.best_reward == chosen["reward"]
    meta = result.policy.metadata
    small = tfmc.prune(residual, result.policy, **CALIB)
    assert meta["rescore_accuracy"] == chosen["rescore_accuracy"] == _accuracy(small, x2, y2)
    assert meta["reward_accuracy"] == _accuracy(small, x, y) and meta["rescored_policies"] == 3


def test_the_reward_under_a_strategy_equals_the_reward_on_one_device(residual, mirrored):
    args = dict(target_macs=0.5, seed=1, episodes=2, warmup=2, progress=False, method="ddpg", **CALIB)
    x, y = _set(80)
    plain = amc.search(residual, (x, y), **args)
    spread = amc.search(residual, (x, y), strategy=mirrored, **args)
    assert [r["channels"] for r in spread.history] == [r["channels"] for r in plain.history]
    np.testing.assert_allclose([r["reward"] for r in spread.history], [r["reward"] for r in plain.history])
    with pytest.raises(ValueError, match=r"^val_data holds 48 images, fewer than one batch \(64: 32 per replica x 2\); "
                                         r"give at least 64$"):
        amc.search(residual, _set(), strategy=mirrored, **args)


def test_bad_reward_sets_and_search_names_are_one_clear_error(residual):
    x, y = _set()
    args = dict(target_macs=0.5, episodes=1, warmup=1, progress=False)
    with pytest.raises(ValueError, match=r"^unknown search 'evolution'; expected one of ddpg, greedy, random$"):
        amc.search(residual, (x, y), method="evolution", **args)
    with pytest.raises(ValueError, match=r"^val_data holds one class only \(label 3\); every policy would score alike"):
        amc.search(residual, (x, np.full(len(y), 3)), **args)
    with pytest.raises(ValueError, match=r"^val_data holds 31 images, fewer than one batch \(32: 32 per replica x 1\)"):
        amc.search(residual, (x[:31], y[:31]), **args)
    with pytest.raises(ValueError, match=r"^rescore_data holds one class only \(label 0\)"):
        amc.search(residual, (x, y), rescore_data=(x, np.zeros(len(y))), **args)


def test_the_reward_spread_scales_the_centred_rewards(residual):
    analysis = ChannelGraph(residual)
    cost = CostModel(analysis, "macs")
    env = PruningEnv(analysis, cost, make_budget(cost, 0.5, 0.2), evaluate=lambda counts: 0.0)
    agent = amc.AmcAgent(env.observation_spec(), env.action_spec(), amc.AgentConfig(reward_scale="spread"), seed=0)
    obs = np.full(11, 0.5, np.float32)
    assert agent.reward_spread() == 1.0
    rewards = [0.9, 0.7, 0.85, 0.6]
    for r in rewards:
        agent.remember([(obs, 0.5, obs, True)], r)
    assert agent.reward_spread() == pytest.approx(np.std(rewards, ddof=1))
    # "reward": every step its own target; "final": the reward on the last step only, bootstrapped back
    for targets, done, carried in (("bootstrap", [0.0, 1.0], [0.8, 0.8]), ("reward", [1.0, 1.0], [0.8, 0.8]),
                                   ("final", [0.0, 1.0], [0.0, 0.8])):
        other = amc.AmcAgent(env.observation_spec(), env.action_spec(), amc.AgentConfig(targets=targets), seed=0)
        other.remember([(obs, 0.5, obs, False), (obs, 0.5, obs, True)], 0.8)
        assert other.buffer.done[:2].tolist() == done
        assert other.buffer.reward[:2].tolist() == pytest.approx(carried)
    with pytest.raises(ValueError, match="reward_scale must be 'none' or 'spread', got 'rank'"):
        amc.AgentConfig(reward_scale="rank")
    with pytest.raises(ValueError, match="targets must be 'bootstrap', 'reward' or 'final', got 'td'"):
        amc.AgentConfig(targets="td")
    with pytest.raises(ValueError, match="targets='final' needs baseline='episode'"):
        amc.AgentConfig(targets="final", baseline="batch")
    with pytest.raises(ValueError, match="updates must be a whole number >= 1, got 0"):
        amc.AgentConfig(updates=0)

