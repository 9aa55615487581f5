"""How an AMC search proposes policies: the DDPG agent, random search, or a greedy sensitivity allocation.

A searcher runs one episode at a time (``episode(index)``) and returns the
row fields it knows: the phase, the policy ({group: kept count}), its cost
and its diagnostics. Every policy it proposes for the budget goes through
the environment, so the action wall keeps it within the budget; the reward
comes from the evaluator the environment calls. Searchers are registered
by name in ``SEARCHES`` (``register_search`` adds one) and save their state
into the run folder's checkpoint.
"""
import abc

import numpy as np

from tfmc.amc.agent import AmcAgent
from tfmc.amc.budget import keep_candidates
from tfmc.errors import UsageError

SEARCHES = {}


def register_search(name, cls):
    """Make ``cls`` available as ``amc.search(method=name)`` and ``tfmc prune --search name``."""
    SEARCHES[name] = cls
    return cls


def searcher_class(name):
    """The registered searcher class of ``name``; UsageError naming the valid ones otherwise."""
    if name not in SEARCHES:
        raise UsageError(f"unknown search {name!r}; expected one of {', '.join(sorted(SEARCHES))}")
    return SEARCHES[name]


def walk(env, choose):
    """One episode through ``env``: ``choose(t, observation)`` proposes each keep ratio.

    Returns:
      (transitions, proposed): per step (observation, proposed action,
      applied action, next observation, done), and the proposals.
    """
    step, transitions = env.reset(), []
    t = 0
    while not step.is_last():
        proposed = choose(t, step.observation)
        following = env.step(np.array([proposed], np.float32))
        transitions.append((step.observation, proposed, env.last_action, following.observation, following.is_last()))
        step, t = following, t + 1
    return transitions


def _policy_row(env, phase):
    result = env.last_episode
    return {"phase": phase, "counts": dict(result["counts"]), "cost": float(result["cost"]), "eligible": True}


class Searcher(abc.ABC):
    """Base of the searchers: ``total`` episodes, one ``episode`` at a time; state for checkpoints.

    Args:
      env: the PruningEnv (its ``evaluate`` scores a finished episode).
      probe: function {group: kept count} -> Score, scoring a policy
        without the wall (the greedy allocation's sensitivity probes).
      episodes, warmup: the search's episode counts.
      seed: seeds the searcher's randomness.
      config: the AgentConfig.
      actor_every: see ``DdpgSearch``.
    """

    def __init__(self, env, probe, *, episodes, warmup, seed, config, actor_every):
        self.env = env
        self.probe = probe
        self.total = int(episodes) + int(warmup)
        self.warmup = int(warmup)

    @abc.abstractmethod
    def episode(self, index):
        """Play episode ``index`` (0-based) through the environment; return its history fields."""

    def save(self, directory):
        """Write the state into ``directory``; return its JSON-able rest."""
        return {}

    def restore(self, directory, state, history):
        """Undo ``save``; ``history`` holds the rows of the episodes done."""


class DdpgSearch(Searcher):
    """AMC's DDPG agent (He et al., AMC, ECCV 2018): warm-up episodes, then noisy actor episodes it learns from.

    Every ``actor_every``-th learning episode takes the actor's own actions
    without noise (phase "actor"): its reward shows what the policy has
    learnt. Every row records the actor's noise-free keep ratio per group,
    the exploration sigma, and after learning the critic and actor losses
    and the critic's mean Q over the episode's transitions.
    """

    def __init__(self, env, probe, *, episodes, warmup, seed, config, actor_every):
        super().__init__(env, probe, episodes=episodes, warmup=warmup, seed=seed, config=config,
                         actor_every=actor_every)
        self.config = config
        self.actor_every = int(actor_every)
        self.agent = AmcAgent(env.observation_spec(), env.action_spec(), config, seed=seed)

    def phase(self, index):
        if index < self.warmup:
            return "warmup"
        if self.actor_every and (index - self.warmup + 1) % self.actor_every == 0:
            return "actor"
        return "explore"

    def episode(self, index):
        agent, phase = self.agent, self.phase(index)
        actor = {}

        def choose(t, observation):
            actor[self.env.groups[t].name] = agent.actor_action(observation)
            if phase == "actor":
                return actor[self.env.groups[t].name]
            return agent.act(observation, index, self.warmup)

        transitions = walk(self.env, choose)
        recorded = 2 if self.config.learn_from == "applied" else 1
        agent.remember([(t[0], t[recorded], t[3], t[4]) for t in transitions], self.env.last_episode["reward"])
        row = _policy_row(self.env, phase)
        row.update(sigma=None if phase == "warmup" else (0.0 if phase == "actor" else agent.sigma(index, self.warmup)),
                   baseline=float(agent.baseline), actor_keep=actor)
        if phase == "warmup":
            row.update(loss=None, critic_loss=None, actor_loss=None, mean_q=None)
        else:
            row.update(agent.learn(len(transitions)))
            row["mean_q"] = agent.mean_q([t[0] for t in transitions], [t[recorded] for t in transitions])
        return row

    def save(self, directory):
        return {"agent": self.agent.save(directory)}

    def restore(self, directory, state, history):
        self.agent.restore(directory, state["agent"])


class RandomSearch(Searcher):
    """Random search: every keep ratio uniform in [lbound, 1], through the same action wall."""

    def __init__(self, env, probe, *, episodes, warmup, seed, config, actor_every):
        super().__init__(env, probe, episodes=episodes, warmup=warmup, seed=seed, config=config,
                         actor_every=actor_every)
        self.rng = np.random.default_rng(seed)

    def episode(self, index):
        walk(self.env, lambda t, observation: float(self.rng.uniform(self.env.lbound, 1.0)))
        return _policy_row(self.env, "random")

    def save(self, directory):
        return {"rng": self.rng.bit_generator.state}

    def restore(self, directory, state, history):
        self.rng.bit_generator.state = state["rng"]


class GreedySearch(Searcher):
    """Greedy per-group sensitivity allocation, as a user of AIMET's or Vitis AI's channel pruning would set it up.

    Episode 1 scores the unpruned model; then each group alone is pruned to
    a few keep counts (evenly spread over its candidates down to lbound,
    as many as the episodes allow) and scored; no other group changes. The
    loss of a group at a count is the drop of the reward from the unpruned
    model's. The allocation starts from the unpruned model and repeatedly
    moves the group whose next measured count costs the least loss per
    unit of budget saved, until the policy fits the budget; then it moves
    groups back up wherever the budget still allows (the most loss regained
    per unit of cost first). The last episode applies that policy through
    the action wall. Probes exceed the budget and are never chosen.
    """

    def __init__(self, env, probe, *, episodes, warmup, seed, config, actor_every):
        super().__init__(env, probe, episodes=episodes, warmup=warmup, seed=seed, config=config,
                         actor_every=actor_every)
        groups = env.groups
        self.channels = {g.name: g.channels for g in groups}
        available = self.total - 2
        if available < len(groups):
            raise UsageError(f"the greedy search needs at least {len(groups) + 2} episodes (warm-up included) for "
                             f"{len(groups)} groups: one unpruned, one per group, one allocation; got {self.total}")
        per_group = available // len(groups)
        self.levels = {}
        for g in groups:
            below = [c for c in keep_candidates(g.channels, env.lbound, env.round_to) if c < g.channels]
            if len(below) > per_group:
                below = [below[int(round(i))] for i in np.linspace(0, len(below) - 1, per_group)]
            self.levels[g.name] = sorted(set(below), reverse=True)
        self.probes = [(g.name, c) for g in groups for c in self.levels[g.name]]
        self.total = len(self.probes) + 2
        self.scores = {}

    def episode(self, index):
        if index <= len(self.probes):
            counts = {} if index == 0 else dict([self.probes[index - 1]])
            self.scores[tuple(counts.items())] = self.probe(counts).value
            return {"phase": "probe", "counts": {name: counts.get(name, c) for name, c in self.channels.items()},
                    "cost": float(self.env.cost_model.total(counts)), "eligible": False}
        allocation = self.allocate()
        walk(self.env, lambda t, observation: allocation[self.env.groups[t].name] / self.env.groups[t].channels)
        return _policy_row(self.env, "greedy")

    def loss(self, name, count):
        """The reward lost when group ``name`` alone keeps ``count`` channels (0 at all of them)."""
        if count == self.channels[name]:
            return 0.0
        return self.scores[()] - self.scores[((name, count),)]

    def allocate(self):
        """The allocation: {group: kept count} within the budget (see the class docstring)."""
        cost = self.env.cost_model
        ladders = {name: [self.channels[name]] + levels for name, levels in self.levels.items()}
        position = dict.fromkeys(ladders, 0)

        def counts():
            return {name: ladders[name][i] for name, i in position.items()}

        def move(name, step):
            trial = dict(position, **{name: position[name] + step})
            trial_counts = {n: ladders[n][i] for n, i in trial.items()}
            saved = cost.total(counts()) - cost.total(trial_counts)
            lost = self.loss(name, trial_counts[name]) - self.loss(name, ladders[name][position[name]])
            return trial, saved, lost

        while cost.total(counts()) > self.env.budget.limit:
            options = [move(name, 1) for name in ladders if position[name] + 1 < len(ladders[name])]
            options = [o for o in options if o[1] > 0]
            position = min(options, key=lambda o: o[2] / o[1])[0]
        while True:
            options = [move(name, -1) for name in ladders if position[name] > 0]
            options = [o for o in options if cost.total({n: ladders[n][i] for n, i in o[0].items()})
                       <= self.env.budget.limit]
            if not options:
                return counts()
            position = max(options, key=lambda o: -o[2] / max(-o[1], 1e-12))[0]

    def restore(self, directory, state, history):
        for row, probe in zip(history, [()] + [(p,) for p in self.probes]):
            if row["phase"] == "probe":
                self.scores[probe] = row["reward"]


for _name, _cls in (("ddpg", DdpgSearch), ("random", RandomSearch), ("greedy", GreedySearch)):
    register_search(_name, _cls)
