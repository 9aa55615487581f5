"""The AMC search driver: the environment, a searcher and the reward evaluator, kept in a run folder."""
import dataclasses
import sys
import time

import numpy as np

from tfmc._keras import require_graph_model
from tfmc.amc.agent import AgentConfig
from tfmc.amc.budget import CostModel, make_budget
from tfmc.amc.env import PruningEnv, no_prunable_message
from tfmc.amc.reward import REWARDS, RewardEvaluator, labelled_set, policy_key, reward_name
from tfmc.amc.searchers import searcher_class
from tfmc.data import as_arrays, check_finite
from tfmc.errors import BudgetError, PolicyError, UsageError
from tfmc.graph import ChannelGraph
from tfmc.policy import PrunePolicy, kept_channels
from tfmc.prune.importance import get_importance
from tfmc.runs import RunFolder, digest
from tfmc.train import make_strategy

__all__ = ["HISTORY_COLUMNS", "REWARDS", "SearchResult", "search"]
_FORMAT = "tfmc.amc.search/2"  # 2: history in history.jsonl, agent as one .npy
_CSV_EVERY = 10  # history.csv is rewritten every this many episodes and when a call returns


@dataclasses.dataclass
class SearchResult:
    """What an AMC search found.

    Attributes:
      policy: the chosen PrunePolicy (keep ratio = kept / channels per
        group); its metadata holds the counts, the budget, the achieved MACs
        / params (/ latency), the reward and reward-set accuracy, and with
        re-scoring the second set's figures.
      history: one dict per episode (see ``HISTORY_COLUMNS``, plus keep
        ratio, kept channels and, for DDPG, the actor's keep ratio per group).
      best_reward, best_accuracy, best_episode: of the chosen policy, on the
        reward set.
      budget: the Budget searched under.
      episodes_done: episodes finished, warm-up included.
      complete: False when the call stopped early (``stop_after``).
      plain_eval_seconds: one evaluation of the reward set by the unpruned
        model through the same forward function (for the cost ratio).
      plain_calibration_seconds: one pass of the calibration images through
        that function (0 without calibration data): the forward part of
        the reconstruction every new policy needs.
      out_dir: where the outputs went, or None.
      method: the searcher's name.
      rescored: with ``rescore_data``, one dict per re-scored policy
        (episode, reward, accuracy, rescore_reward, rescore_accuracy), best
        reward first; else [].
      evaluations: policies evaluated on the reward set (repeats excluded).
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
    method: str = "random"
    rescored: list = dataclasses.field(default_factory=list)
    evaluations: int = 0

    @property
    def mean_episode_seconds(self):
        """Mean wall time of the episodes in the history (agent, evaluation and bookkeeping)."""
        seconds = [row["seconds"] for row in self.history]
        return float(np.mean(seconds)) if seconds else float("nan")


HISTORY_COLUMNS = ("episode", "phase", "reward", "accuracy", "macs", "params", "cost", "cost_fraction", "sigma",
                   "baseline", "loss", "critic_loss", "actor_loss", "mean_q", "best_reward", "reward_was_nan",
                   "evaluated", "forward_seconds", "seconds")
# the diagnostics of the DDPG agent, in TensorBoard and diagnostics.png
_DIAGNOSTICS = ("sigma", "critic_loss", "actor_loss", "mean_q", "baseline")


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
        if kept_channels(g.channels, ratios[g.name], g.granularity(round_to)) != counts[g.name]:  # must round-trip
            raise RuntimeError(f"internal error: keep ratio {ratios[g.name]} of {g.name!r} does not give "
                               f"{counts[g.name]} channels")
    return PrunePolicy(ratios, round_to=round_to, metadata=metadata)


def search(model, val_data, *, target_macs=None, target_params=None, target_latency_ms=None, latency_table=None,
           calib_data=None, reward="acc", episodes=300, warmup=100, lbound=0.2, round_to=8, out_dir=None,
           resume=False, seed=0, progress=True, stop_after=None, agent_config=None, max_calib_images=3000,
           fill_budget=False, method="random", rescore_data=None, rescore_top=5, actor_every=10, strategy=None,
           importance=None):
    """Search per-group keep ratios under a hard budget (He et al., AMC, ECCV 2018; by default random search).

    Each episode walks the prunable channel groups in topological order; the
    searcher (``method``: random search, the default; the paper's DDPG
    agent; or a greedy sensitivity allocation) proposes a keep ratio per group,
    the action wall keeps the policy
    within the budget, and the policy is scored on the reward set by one
    reusable masked copy of the model (least-squares refitted when
    ``calib_data`` is given, layer after layer as ``tfmc.prune`` refits, so
    the reward is that of the model ``tfmc.prune(model, policy,
    calib_data)`` builds), without fine-tuning. With ``method="ddpg"``,
    after ``warmup`` episodes of random actions the agent learns from every
    episode. A policy seen before is not evaluated again (built-in rewards
    only). Random search is the default: in the benchmark at equal
    evaluations it was never far behind the best searcher, and DDPG never
    beat it by two standard errors (docs/amc.md, "Which searcher is the
    default").

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
      agent_config: an AgentConfig (default: ``AgentConfig()``, the paper's agent with rewards scaled by
        their spread and the reward as the critic's target).
      max_calib_images: calibration images used for reconstruction.
      method: "random" (the default: uniform random keep ratios through
        the wall; docs/amc.md says why), "ddpg" (the paper's agent) or
        "greedy" (per-group sensitivity probes, then an allocation; see
        ``tfmc.amc.searchers``; it needs at least groups + 2 episodes); equal
        ``episodes`` and ``warmup`` give every method the same number of
        evaluated policies (greedy may use fewer).
      rescore_data: a second held-out labelled set, like ``val_data``. The
        best of many noisy evaluations overstates itself (the winner's
        curse): with it, the ``rescore_top`` distinct policies of highest
        reward are scored again on this set and the best there is chosen;
        the policy's metadata and ``SearchResult.rescored`` report both
        figures.
      rescore_top: how many policies are re-scored.
      actor_every: with ``method="ddpg"``, every this many learning
        episodes the actor's own noise-free policy is scored (phase
        "actor"); 0: never.
      strategy: a tf.distribute.Strategy or its name ("mirrored", ...):
        the reward set is scored on every device of it.
      fill_budget: clamp each keep ratio from below too, so that every
        policy spends the whole budget (up to channel rounding). The
        paper's wall (the default) only stops a policy from exceeding it,
        and with random actions many warm-up policies then leave part of it
        unused, which the accuracy reward can only punish. Meant for
        ``reward="acc"``; the other rewards pay for saving.
      importance: the channel criterion the masked model keeps channels by
        (``tfmc.prune.importance``: a name, config dict or Importance;
        default L1). The policy records it in ``metadata["importance"]``,
        and ``tfmc.prune`` applies the policy with it. "taylor" reads
        ``calib_data``.

    Returns:
      SearchResult.

    Raises:
      ValueError: no or several budgets, a target outside (0, 1), a budget
        below what lbound everywhere gives (the message names the smallest
        achievable value), a model without prunable groups (with the
        reasons), an unknown reward, or an ``out_dir`` holding another
        search (or one to resume without ``resume=True``), an unknown
        ``method``, or a reward / re-scoring set of one class only or
        smaller than one batch (``tfmc.amc.reward.BATCH`` images per replica).
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
    if int(actor_every) != actor_every or actor_every < 0 or int(rescore_top) != rescore_top or rescore_top < 1:
        raise UsageError(f"actor_every must be >= 0 and rescore_top >= 1 (whole numbers), got {actor_every!r} "
                         f"and {rescore_top!r}")
    make_searcher = searcher_class(method)
    name_of_reward = reward_name(reward)
    analysis = ChannelGraph(model)
    groups = [g for g in analysis.groups if g.prunable]
    if not groups:
        raise PolicyError(no_prunable_message(analysis))
    cost_model = CostModel(analysis, metric, latency=latency_table)
    budget = make_budget(cost_model, target, lbound, round_to)
    strategy = make_strategy(strategy)
    replicas = strategy.num_replicas_in_sync
    x_val, y_val = labelled_set(val_data, "val_data", replicas)
    rescore = None if rescore_data is None else labelled_set(rescore_data, "rescore_data", replicas)
    macs_model = cost_model if metric == "macs" else CostModel(analysis, "macs")
    params_model = cost_model if metric == "params" else CostModel(analysis, "params")
    config = agent_config or AgentConfig()
    fill_budget = bool(fill_budget)
    calib_data = as_arrays(calib_data, "calib_data")
    calib = None if calib_data is None else np.asarray(calib_data, np.float32)[:max_calib_images]
    if calib is not None:
        check_finite(None, "calib_data", calib)
    criterion = get_importance(importance)
    fingerprint = {
        "model": model.name, "weights": digest(*model.get_weights()),
        "groups": [[g.name, g.channels] for g in groups],
        "budget": {"metric": metric, "target": float(target)}, "lbound": float(lbound), "round_to": int(round_to),
        "reward": name_of_reward, "reward_set": digest(x_val, y_val),
        "calibration": None if calib is None else digest(calib), "seed": int(seed), "warmup": int(warmup),
        "fill_budget": fill_budget, "method": method, "actor_every": int(actor_every) if method == "ddpg" else 0,
        "importance": criterion.to_config(),
        "agent": config.as_dict(),
    }
    if metric == "latency":
        fingerprint["latency_full_ms"] = round(float(budget.full), 9)
    run = None
    if out_dir is not None:
        run = RunFolder(out_dir, kind="AMC search", format=_FORMAT, fingerprint=fingerprint,
                        upgrade=_with_later_defaults)
    resumed = run.open(resume) if run else None

    # the sampling seed and the criterion of tfmc.prune: the reward is its model's
    evaluator = RewardEvaluator(model, analysis, reward, x_val, y_val, macs_model, params_model, calib, strategy,
                                importance=criterion)
    plain_eval_seconds = _second_call_seconds(evaluator.logits, x_val)
    plain_calibration_seconds = 0.0 if calib is None else _second_call_seconds(evaluator.masked.predict, calib)
    history = [] if resumed is None else resumed.history
    scored = {}

    def score(counts):
        scored["last"] = evaluator.score(counts, len(history) + 1)
        return scored["last"]

    env = PruningEnv(analysis, cost_model, budget, evaluate=lambda counts: score(counts).value, lbound=lbound,
                     round_to=round_to, fill_budget=fill_budget)
    searcher = make_searcher(env, score, episodes=episodes, warmup=warmup, seed=seed, config=config,
                             actor_every=actor_every)
    best = None
    if resumed is not None:
        state = resumed.state.get("searcher") or {"agent": resumed.state["agent"]}  # "agent": before the searchers
        searcher.restore(resumed.directory, state, history)
        best = resumed.state["best"]
        evaluator.resume(history)

    total = searcher.total
    bar = _progress(total, len(history), progress)
    names = [g.name for g in groups]
    ran = 0
    while len(history) < total and (stop_after is None or ran < stop_after):
        started = time.perf_counter()
        row = _row(len(history) + 1, searcher.episode(len(history)), scored["last"], budget, groups)
        if row["eligible"] and (best is None or row["reward"] > best["reward"]):
            best = {key: row[key] for key in ("reward", "accuracy", "episode", "macs", "params", "cost")}
            best["counts"] = dict(row["channels"])
        row["best_reward"] = None if best is None else best["reward"]
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        ran += 1
        if run:
            _record(run, searcher, history, best, names)
        bar.update(1)
        bar.set_postfix(reward=f"{row['reward']:.4f}", best="-" if best is None else f"{best['reward']:.4f}")
    bar.close()
    if best is None:  # stopped before the greedy allocation: the budget has no policy yet
        raise UsageError(f"the search stopped after {len(history)} episodes, before any policy within the budget; "
                         "resume it")

    rescored = []
    if rescore is not None:
        rescored = _rescore(evaluator, history, rescore, rescore_top)
        chosen = max(rescored, key=lambda r: (r["rescore_reward"], r["reward"]))
        best = next(dict(row, counts=row["channels"]) for row in history if row["episode"] == chosen["episode"])
    evaluator.restore()
    if run:
        _history_csv(run, history, names)

    metadata = {
        "method": "amc", "search": method,
        "budget": {"metric": metric, "target": float(target), "limit": float(budget.limit),
                   "original": float(budget.full)},
        "kept_channels": dict(best["counts"]), "channels": {g.name: g.channels for g in groups},
        "macs": best["macs"], "params": best["params"], "cost": best["cost"],
        "reward": name_of_reward, "reward_value": best["reward"], "reward_accuracy": best["accuracy"],
        "episode": best["episode"], "seed": int(seed), "fill_budget": fill_budget,
        "importance": criterion.to_config(),
    }
    if rescored:
        chosen = next(r for r in rescored if r["episode"] == best["episode"])
        metadata.update(rescore_value=chosen["rescore_reward"], rescore_accuracy=chosen["rescore_accuracy"],
                        rescored_policies=len(rescored))
    policy = _policy(groups, best["counts"], round_to, metadata)
    result = SearchResult(
        policy=policy, history=history, best_reward=best["reward"], best_accuracy=best["accuracy"],
        best_episode=best["episode"], budget=budget, episodes_done=len(history), complete=len(history) >= total,
        plain_eval_seconds=plain_eval_seconds, plain_calibration_seconds=plain_calibration_seconds,
        out_dir=run.dir if run else None, method=method, rescored=rescored,
        evaluations=sum(1 for row in history if row["evaluated"]),
    )
    if run:
        _plots(run, policy, history)
    return result


def _row(episode, fields, score, budget, groups):
    """A history row from the searcher's fields and the Score of its policy."""
    counts = fields.pop("counts")
    row = {"episode": episode, "phase": fields.pop("phase"), "reward": score.value, "accuracy": score.accuracy,
           "macs": int(score.macs), "params": int(score.params), "cost": fields.pop("cost")}
    row["cost_fraction"] = row["cost"] / budget.full
    row.update({key: None for key in ("sigma", "baseline", "loss", "critic_loss", "actor_loss", "mean_q")})
    row.update(fields)
    row.update(reward_was_nan=score.was_nan, evaluated=score.evaluated, forward_seconds=score.forward_seconds,
               keep={g.name: counts[g.name] / g.channels for g in groups}, channels=dict(counts))
    return row


def _record(run, searcher, history, best, names):
    """After an episode: TensorBoard scalars, the journal row, the checkpoint, now and then the CSV."""
    row = history[-1]
    scalars = {"reward": row["reward"], "accuracy": row["accuracy"], "best_reward": row["best_reward"],
               "cost_fraction": row["cost_fraction"], **{k: row[k] for k in _DIAGNOSTICS}}
    scalars.update({f"actor_keep/{g}": v for g, v in row.get("actor_keep", {}).items()})
    if row["phase"] == "actor":
        scalars["actor_reward"] = row["reward"]
    run.scalars(row["episode"], scalars)
    run.append(row)
    done = len(history)
    run.checkpoint(done, lambda directory: {"episodes_done": done, "best": best,
                                            "searcher": searcher.save(directory)})
    if done % _CSV_EVERY == 0:
        _history_csv(run, history, names)


def _rescore(evaluator, history, rescore, top):
    """The ``top`` distinct eligible policies of highest reward, scored again on the second set."""
    x, y = rescore
    seen, rows = set(), []
    for row in sorted((r for r in history if r.get("eligible", True)), key=lambda r: (-r["reward"], r["episode"])):
        key = policy_key(row["channels"])
        if key not in seen:
            seen.add(key)
            rows.append(row)
        if len(rows) == top:
            break
    rescored = []
    for row in rows:
        value, accuracy = evaluator.rescore(row["channels"], x, y)
        rescored.append({"episode": row["episode"], "reward": row["reward"], "accuracy": row["accuracy"],
                         "rescore_reward": value, "rescore_accuracy": accuracy})
    return rescored


def _plots(run, policy, history):
    from tfmc.amc import plots

    policy.to_json(run.path("best_policy.json"))
    plots.plot_keep_ratios(policy, run.path("keep_ratios.png"))
    actor = [row for row in history if row["phase"] == "actor"]
    run.plot("rewards.png", history, "episode", {"reward": "reward", "best so far": "best_reward"}, "AMC search",
             "reward")
    if any(row.get("critic_loss") is not None for row in history):
        run.plot("diagnostics.png", history, "episode", {k.replace("_", " "): k for k in _DIAGNOSTICS},
                 "DDPG diagnostics", "value")
        groups = list(history[-1]["actor_keep"])
        flat = [dict(episode=row["episode"], **row["actor_keep"]) for row in history]
        run.plot("actor_keep.png", flat, "episode", {g: g for g in groups}, "actor keep ratio per group (no noise)",
                 "keep ratio")
    if actor:
        run.plot("actor_rewards.png", actor, "episode", {"noise-free actor": "reward"},
                 "reward of the actor's own policy", "reward")


def _history_csv(run, history, groups):
    """history.csv: the journal's columns, then the keep ratio and the kept channels of every group."""
    columns = list(HISTORY_COLUMNS) + [f"keep:{g}" for g in groups] + [f"channels:{g}" for g in groups]
    rows = []
    for row in history:
        flat = {k: row.get(k) for k in HISTORY_COLUMNS}
        flat.update({f"keep:{g}": row["keep"][g] for g in groups})
        flat.update({f"channels:{g}": row["channels"][g] for g in groups})
        rows.append(flat)
    run.write_csv(rows, columns)


def _with_later_defaults(fingerprint):
    """A stored fingerprint with the settings added since format 2 at the values its search ran with."""
    fingerprint = dict(fingerprint)
    fingerprint.setdefault("fill_budget", False)
    fingerprint.setdefault("method", "ddpg")
    fingerprint.setdefault("importance", {"name": "l1"})
    fingerprint.setdefault("actor_every", 0)  # searches before it had no noise-free episodes
    if isinstance(fingerprint.get("agent"), dict):
        legacy = {"reward_scale": "none", "updates": 1, "targets": "bootstrap"}  # how searches before these learnt
        fingerprint["agent"] = {**AgentConfig().as_dict(), **legacy, **fingerprint["agent"]}
    return fingerprint


def _second_call_seconds(function, x):
    """Wall time of ``function(x)`` when called a second time (the first may trace)."""
    function(x)
    started = time.perf_counter()
    function(x)
    return time.perf_counter() - started


def _progress(total, done, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="AMC", unit="episode", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True)
