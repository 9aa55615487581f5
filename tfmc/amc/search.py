"""The AMC search loop: episodes, rewards, checkpoints, history, progress and the result."""
import dataclasses
import math
import os
import sys
import time
import warnings

import numpy as np

from tfmc._keras import require_graph_model
from tfmc.amc.agent import AgentConfig, AmcAgent
from tfmc.amc.budget import CostModel, make_budget
from tfmc.amc.env import PruningEnv, no_prunable_message
from tfmc.amc.masked import MaskedModel
from tfmc.data import as_arrays, check_finite, check_labels
from tfmc.errors import BudgetError, DataError, PolicyError, UsageError
from tfmc.graph import ChannelGraph
from tfmc.policy import PrunePolicy, kept_channels
from tfmc.runs import RunFolder, digest

REWARDS = ("acc", "acc_flops", "acc_params")
_FORMAT = "tfmc.amc.search/2"  # 2: history in history.jsonl, agent as one .npy
_CSV_EVERY = 10  # history.csv is rewritten every this many episodes and when a call returns


@dataclasses.dataclass
class SearchResult:
    """What an AMC search found.

    Attributes:
      policy: the best PrunePolicy (keep ratio = kept / channels per group);
        its metadata holds the counts, the budget, the achieved MACs /
        params (/ latency) and the reward and reward-set accuracy.
      history: one dict per episode (see ``HISTORY_COLUMNS``, plus a keep
        ratio per group).
      best_reward, best_accuracy, best_episode: of the best policy.
      budget: the Budget searched under.
      episodes_done: episodes finished, warm-up included.
      complete: False when the call stopped early (``stop_after``).
      plain_eval_seconds: one evaluation of the reward set by the unpruned
        model through the same forward function (for the cost ratio).
      plain_calibration_seconds: one pass of the calibration images through
        that function (0 without calibration data): the forward part of
        the reconstruction every new policy needs.
      out_dir: where the outputs went, or None.
    """

    policy: PrunePolicy
    history: list
    best_reward: float
    best_accuracy: float
    best_episode: int
    budget: object
    episodes_done: int
    complete: bool
    plain_eval_seconds: float
    plain_calibration_seconds: float = 0.0
    out_dir: object = None

    @property
    def mean_episode_seconds(self):
        """Mean wall time of the episodes in the history (agent, evaluation and bookkeeping)."""
        seconds = [row["seconds"] for row in self.history]
        return float(np.mean(seconds)) if seconds else float("nan")


HISTORY_COLUMNS = ("episode", "phase", "reward", "accuracy", "macs", "params", "cost", "cost_fraction", "sigma",
                   "baseline", "loss", "best_reward", "reward_was_nan", "evaluated", "seconds")


def _reward_name(reward):
    if callable(reward):
        return f"callable:{getattr(reward, '__module__', '')}.{getattr(reward, '__qualname__', type(reward).__name__)}"
    if reward not in REWARDS:
        raise UsageError(f"unknown reward {reward!r}; expected one of {', '.join(REWARDS)} or a function "
                         "(y_true, logits) -> float")
    return reward


def _reward_set(val_data):
    val_data = as_arrays(val_data, "val_data", labels=True)
    if hasattr(val_data, "x_val") and hasattr(val_data, "y_val"):
        x, y = np.asarray(val_data.x_val, np.float32), np.asarray(val_data.y_val)
    elif isinstance(val_data, (tuple, list)) and len(val_data) == 2:
        x, y = (np.asarray(v) for v in val_data)
        if len(x) != len(y) or not len(x):
            raise DataError(f"val_data must be non-empty (x, y) of equal length, got {len(x)} images and {len(y)} labels")
        x = x.astype(np.float32)
    else:
        raise DataError("val_data must be (x, y) arrays or a tfmc.data.Dataset (its validation split is the reward set)")
    check_finite(None, "val_data images", x)
    check_labels(None, "val_data labels", y)
    return x, y


def _target(target_macs, target_params, target_latency_ms, latency_table):
    given = {k: v for k, v in (("macs", target_macs), ("params", target_params), ("latency", target_latency_ms))
             if v is not None}
    if len(given) != 1:
        raise BudgetError("give exactly one budget: target_macs, target_params or target_latency_ms")
    metric, value = next(iter(given.items()))
    if metric == "latency" and latency_table is None:
        raise BudgetError("target_latency_ms needs latency_table: a tflite_bench LatencyTable or a function "
                         "(layer name, in_channels, out_channels) -> ms")
    return metric, value


def _policy(groups, counts, round_to, metadata):
    ratios = {}
    for g in groups:
        ratios[g.name] = counts[g.name] / g.channels
        if kept_channels(g.channels, ratios[g.name], round_to) != counts[g.name]:  # the count must round-trip
            raise RuntimeError(f"internal error: keep ratio {ratios[g.name]} of {g.name!r} does not give "
                               f"{counts[g.name]} channels")
    return PrunePolicy(ratios, round_to=round_to, metadata=metadata)


def search(model, val_data, *, target_macs=None, target_params=None, target_latency_ms=None, latency_table=None,
           calib_data=None, reward="acc", episodes=300, warmup=100, lbound=0.2, round_to=8, out_dir=None,
           resume=False, seed=0, progress=True, stop_after=None, agent_config=None, max_calib_images=3000,
           fill_budget=False):
    """Search per-group keep ratios under a hard budget with a DDPG agent (He et al., AMC, ECCV 2018).

    Each episode walks the prunable channel groups in topological order; the
    agent proposes a keep ratio per group, the action wall keeps the policy
    within the budget, and the policy is scored on the reward set by one
    reusable masked copy of the model (least-squares refitted when
    ``calib_data`` is given, layer after layer as ``tfmc.prune`` refits, so
    the reward is that of the model ``tfmc.prune(model, policy,
    calib_data)`` builds), without fine-tuning. After ``warmup`` episodes
    of random actions the agent learns from every episode. A policy seen
    before is not evaluated again (built-in rewards only).

    Args:
      model: a functional or Sequential tf_keras classifier (logits or
        probabilities out); never changed.
      val_data: the reward set, (x, y) arrays, a tfmc.data.Dataset (its
        validation split) or a tf.data.Dataset of (image, label) pairs. Keep
        it apart from the test set.
      target_macs / target_params: the budget as a fraction in (0, 1) of the
        original MACs / parameters; or
      target_latency_ms: the budget in milliseconds, summed over the layers
        of ``latency_table``.
      latency_table: a ``tflite_bench.lut.LatencyTable`` or a function
        (layer name, in_channels, out_channels) -> ms.
      calib_data: images for least-squares reconstruction (training images,
        not the reward set; give ``tfmc.prune`` the same ones); None
        evaluates plain masked pruning. Each episode runs them through the
        model once, in one batch.
      reward: "acc" (top-1 accuracy, the paper's -error shifted by one),
        "acc_flops" (-error * log MACs), "acc_params" (-error * log params),
        or a function (y_true, logits) -> float, higher is better. A NaN
        reward gets the worst reward seen so far (0 for a function when none
        was seen; the built-in rewards' value at accuracy 0) and a warning.
      episodes: learning episodes after the warm-up (paper: 300).
      warmup: episodes of uniform random actions first (paper: 100).
      lbound: the smallest keep ratio of a group (paper: 0.2).
      round_to: kept channel counts are multiples of this.
      out_dir: folder for checkpoints (after every episode), history.jsonl
        (every episode) and history.csv (every 10 and at the end),
        TensorBoard scalars, best_policy.json and the plots; None keeps
        everything in memory (no resume).
      resume: continue the search checkpointed in ``out_dir``.
      seed: the same seed gives the same policy on the same machine.
      progress: show a progress bar on stderr.
      stop_after: run at most this many episodes in this call, then return
        (the checkpoint lets a later call with ``resume=True`` go on).
      agent_config: an AgentConfig (default: the paper's settings).
      max_calib_images: calibration images used for reconstruction.
      fill_budget: clamp each keep ratio from below too, so that every
        policy spends the whole budget (up to channel rounding). The
        paper's wall (the default) only stops a policy from exceeding it,
        and with random actions many warm-up policies then leave part of it
        unused, which the accuracy reward can only punish. Meant for
        ``reward="acc"``; the other rewards pay for saving.

    Returns:
      SearchResult.

    Raises:
      ValueError: no or several budgets, a target outside (0, 1), a budget
        below what lbound everywhere gives (the message names the smallest
        achievable value), a model without prunable groups (with the
        reasons), an unknown reward, or an ``out_dir`` holding another
        search (or one to resume without ``resume=True``).
      TypeError: a subclassed model.

    Example:
      >>> result = tfmc.amc.search(model, (x_val, y_val), target_macs=0.5, calib_data=x_train[:500],
      ...                          out_dir="amc_run")
      >>> small = tfmc.prune(model, result.policy, calib_data=x_train[:500])
    """
    require_graph_model(model)
    metric, target = _target(target_macs, target_params, target_latency_ms, latency_table)
    if not 0.0 < lbound <= 1.0:
        raise UsageError(f"lbound must be in (0, 1], got {lbound!r}")
    if int(episodes) != episodes or episodes < 1 or int(warmup) != warmup or warmup < 0:
        raise UsageError(f"episodes must be >= 1 and warmup >= 0 (whole numbers), got {episodes!r} and {warmup!r}")
    reward_name = _reward_name(reward)
    x_val, y_val = _reward_set(val_data)
    analysis = ChannelGraph(model)
    groups = [g for g in analysis.groups if g.prunable]
    if not groups:
        raise PolicyError(no_prunable_message(analysis))
    cost_model = CostModel(analysis, metric, latency=latency_table)
    budget = make_budget(cost_model, target, lbound, round_to)
    macs_model = cost_model if metric == "macs" else CostModel(analysis, "macs")
    params_model = cost_model if metric == "params" else CostModel(analysis, "params")
    config = agent_config or AgentConfig()
    fill_budget = bool(fill_budget)
    calib_data = as_arrays(calib_data, "calib_data")
    calib = None if calib_data is None else np.asarray(calib_data, np.float32)[:max_calib_images]
    if calib is not None:
        check_finite(None, "calib_data", calib)
    fingerprint = {
        "model": model.name, "weights": digest(*model.get_weights()),
        "groups": [[g.name, g.channels] for g in groups],
        "budget": {"metric": metric, "target": float(target)}, "lbound": float(lbound), "round_to": int(round_to),
        "reward": reward_name, "reward_set": digest(x_val, y_val),
        "calibration": None if calib is None else digest(calib), "seed": int(seed), "warmup": int(warmup),
        "fill_budget": fill_budget,
        "agent": config.as_dict(),
    }
    if metric == "latency":
        fingerprint["latency_full_ms"] = round(float(budget.full), 9)
    run = None
    if out_dir is not None:
        run = RunFolder(out_dir, kind="AMC search", format=_FORMAT, fingerprint=fingerprint,
                        upgrade=_with_later_defaults)
    resumed = run.open(resume) if run else None

    masked = MaskedModel(model, analysis, calib)  # the sampling seed of tfmc.prune: the reward is its model's
    plain_eval_seconds = _second_call_seconds(masked.predict, x_val)
    plain_calibration_seconds = 0.0 if calib is None else _second_call_seconds(masked.predict, calib)

    memo = {}  # a built-in reward of a policy is deterministic: a policy seen before is not evaluated again

    def score(counts):
        """(value, accuracy, MACs, params, whether the policy was evaluated now)."""
        if callable(reward):  # a user's function may keep state: call it every time
            return evaluate_policy(counts) + (True,)
        key = _policy_key(counts)
        fresh = key not in memo
        if fresh:
            memo[key] = evaluate_policy(counts)
        return memo[key] + (fresh,)

    def evaluate_policy(counts):
        masked.apply(counts)
        logits = masked.predict(x_val)
        accuracy = float(np.mean(np.argmax(logits, axis=-1) == y_val))
        macs, params = macs_model.total(counts), params_model.total(counts)
        if callable(reward):
            value = float(reward(y_val, logits))
        elif reward == "acc":
            value = accuracy
        else:
            value = -(1.0 - accuracy) * math.log(macs if reward == "acc_flops" else params)
        return value, accuracy, macs, params

    scored = {}

    def evaluate(counts):
        value, accuracy, macs, params, fresh = score(counts)
        was_nan = not math.isfinite(value)
        if was_nan:
            worst = _worst(history, reward, macs, params)
            warnings.warn(f"AMC episode {len(history) + 1}: the reward was {value}; it gets the worst reward "
                          f"{worst:.6g} and the search goes on", RuntimeWarning, stacklevel=3)
            value = worst
        scored["last"] = value, accuracy, macs, params, was_nan, fresh
        return value

    env = PruningEnv(analysis, cost_model, budget, evaluate=evaluate, lbound=lbound, round_to=round_to,
                     fill_budget=fill_budget)
    agent = AmcAgent(env.observation_spec(), env.action_spec(), config, seed=seed)
    history, best = [], None
    if resumed is not None:
        agent.restore(resumed.directory, resumed.state["agent"])
        best, history = resumed.state["best"], resumed.history
        if not callable(reward):  # a resumed search knows the policies the first run scored
            for row in history:
                memo[_policy_key(row["channels"])] = row["reward"], row["accuracy"], row["macs"], row["params"]

    total = warmup + episodes
    bar = _progress(total, len(history), progress)
    names = [g.name for g in groups]
    ran = 0
    while len(history) < total and (stop_after is None or ran < stop_after):
        episode = len(history)
        started = time.perf_counter()
        step, transitions = env.reset(), []
        while not step.is_last():
            action = agent.act(step.observation, episode, warmup)
            following = env.step(np.array([action], np.float32))
            recorded = env.last_action if config.learn_from == "applied" else action
            transitions.append((step.observation, recorded, following.observation, following.is_last()))
            step = following
        result = env.last_episode
        value, accuracy, macs, params, was_nan, evaluated = scored["last"]
        agent.remember(transitions, value)
        loss = agent.learn(len(transitions)) if episode >= warmup else None
        row = {
            "episode": episode + 1, "phase": "warmup" if episode < warmup else "explore", "reward": value,
            "accuracy": accuracy, "macs": int(macs), "params": int(params), "cost": float(result["cost"]),
            "cost_fraction": float(result["cost"] / budget.full),
            "sigma": float(agent.sigma(episode, warmup)) if episode >= warmup else None,
            "baseline": float(agent.baseline), "loss": loss, "reward_was_nan": was_nan,
            "evaluated": evaluated,
            "keep": {g.name: result["counts"][g.name] / g.channels for g in groups},
            "channels": dict(result["counts"]),
        }
        if best is None or value > best["reward"]:
            best = {"reward": value, "accuracy": accuracy, "episode": episode + 1, "counts": dict(result["counts"]),
                    "macs": int(macs), "params": int(params), "cost": float(result["cost"])}
        row["best_reward"] = best["reward"]
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        ran += 1
        if run:
            run.scalars(episode + 1, {"reward": value, "accuracy": accuracy, "best_reward": best["reward"],
                                      "cost_fraction": row["cost_fraction"]})
            run.append(row)
            done = len(history)
            run.checkpoint(done, lambda directory: {"episodes_done": done, "best": best,
                                                    "agent": agent.save(directory)})
            if done % _CSV_EVERY == 0:
                _history_csv(run, history, names)
        bar.update(1)
        bar.set_postfix(reward=f"{value:.4f}", best=f"{best['reward']:.4f}")
    bar.close()
    masked.restore()
    if run:
        _history_csv(run, history, names)

    policy = _policy(groups, best["counts"], round_to, {
        "method": "amc", "budget": {"metric": metric, "target": float(target), "limit": float(budget.limit),
                                    "original": float(budget.full)},
        "kept_channels": dict(best["counts"]), "channels": {g.name: g.channels for g in groups},
        "macs": best["macs"], "params": best["params"], "cost": best["cost"],
        "reward": reward_name, "reward_value": best["reward"], "reward_accuracy": best["accuracy"],
        "episode": best["episode"], "seed": int(seed), "fill_budget": fill_budget,
    })
    result = SearchResult(
        policy=policy, history=history, best_reward=best["reward"], best_accuracy=best["accuracy"],
        best_episode=best["episode"], budget=budget, episodes_done=len(history), complete=len(history) >= total,
        plain_eval_seconds=plain_eval_seconds, plain_calibration_seconds=plain_calibration_seconds,
        out_dir=run.dir if run else None,
    )
    if run:
        from tfmc.amc import plots

        policy.to_json(run.path("best_policy.json"))
        plots.plot_keep_ratios(policy, run.path("keep_ratios.png"))
        run.plot("rewards.png", history, "episode", {"reward": "reward", "best so far": "best_reward"}, "AMC search",
                 "reward")
    return result


def _with_later_defaults(fingerprint):
    """A stored fingerprint with the settings added since format 2 at their defaults (its search ran with them)."""
    fingerprint = dict(fingerprint)
    fingerprint.setdefault("fill_budget", False)
    if isinstance(fingerprint.get("agent"), dict):
        fingerprint["agent"] = {**AgentConfig().as_dict(), **fingerprint["agent"]}
    return fingerprint


def _history_csv(run, history, groups):
    """history.csv: the journal's columns, then the keep ratio and the kept channels of every group."""
    columns = list(HISTORY_COLUMNS) + [f"keep:{g}" for g in groups] + [f"channels:{g}" for g in groups]
    rows = []
    for row in history:
        flat = {k: row[k] for k in HISTORY_COLUMNS}
        flat.update({f"keep:{g}": row["keep"][g] for g in groups})
        flat.update({f"channels:{g}": row["channels"][g] for g in groups})
        rows.append(flat)
    run.write_csv(rows, columns)


def _policy_key(counts):
    """The memo key of a policy given as {group: kept count} (also as read back from history.jsonl)."""
    return tuple(sorted(counts.items()))


def _second_call_seconds(function, x):
    """Wall time of ``function(x)`` when called a second time (the first may trace)."""
    function(x)
    started = time.perf_counter()
    function(x)
    return time.perf_counter() - started


def _worst(history, reward, macs, params):
    """The reward a NaN episode gets: the lowest seen so far, and no more than the built-in reward at accuracy 0."""
    finite = [row["reward"] for row in history if math.isfinite(row["reward"])]
    if callable(reward):
        return min(finite) if finite else 0.0
    floor = {"acc": 0.0, "acc_flops": -math.log(macs), "acc_params": -math.log(params)}[reward]
    return min(finite + [floor])


def _progress(total, done, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="AMC", unit="episode", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True)
