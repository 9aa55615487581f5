"""The AMC agent: a TF-Agents DdpgAgent, its replay buffer, exploration noise and reward baseline.

Settings follow He et al. (AMC, ECCV 2018, section 3.5 and the authors'
code): actor and critic with two hidden layers of 300 units (the critic takes
the action at its second layer), Adam with learning rates 1e-4 (actor) and
1e-3 (critic), soft target updates with tau 0.01, discount 1, batches of 64
from a replay buffer of 2000 transitions, warm-up episodes of uniform random
actions (the authors' code; ``warmup_actions="noise"``: the paper's sigma-0.5
noise), then a truncated normal around the actor's action whose sigma
starts at 0.5 and decays by 0.95 per episode. Every transition of an episode
carries the episode's reward minus a moving-average baseline: by default an
average over episodes (decay 0.5); ``AgentConfig(baseline="batch")`` moves it
with each sampled batch's mean reward instead, as the authors' code does.
A transition records the action the environment applied (after the action
wall); ``learn_from="proposed"`` records the agent's own, as the authors'
code does.
``reward_scale="spread"`` also divides the centred rewards by the standard
deviation of the episode rewards so far, so that the critic's targets have
unit scale however close the accuracies of the policies are; ``updates``
runs that many DDPG updates per transition instead of one;
``targets="reward"`` makes every transition terminal for the critic, so
that Q(s, a) estimates the episode reward each transition carries instead
of adding the rewards of the steps after it; ``targets="final"`` puts the
episode reward on the last transition only (0 on the others) and
bootstraps with discount 1, the textbook episodic DDPG, so that Q(s, a)
estimates the reward of the episode when the actor chooses the later
actions (with "reward" it is the reward under whatever policy filled the
replay buffer). These are tfmc's additions
(not in the paper), ``reward_scale="spread"`` and ``targets="reward"`` its
defaults: with the paper's settings the actor's
output rose to the top of its range in every group and the search
collapsed onto one policy (docs/amc.md, "What the diagnostics showed"). ``sigma_min`` keeps the
decaying exploration noise from falling below a floor. ``learn`` returns the critic and actor losses
and ``mean_q`` the critic's value of transitions, the diagnostics a search
records per episode.

All randomness after the networks' initialisation comes from one numpy
Generator whose state is saved with the checkpoint, so a resumed search
draws exactly what an uninterrupted one would.
"""
import dataclasses
import math
import os

import numpy as np
from scipy import special

from tfmc._keras import keras, tf
from tfmc.errors import OutputError, UsageError


@dataclasses.dataclass
class AgentConfig:
    """DDPG hyper-parameters: the paper's, except ``reward_scale="spread"`` and ``targets="reward"`` (docs/amc.md).

    ``AgentConfig(reward_scale="none", targets="bootstrap")`` is the paper's agent.
    """

    hidden: tuple = (300, 300)
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    tau: float = 0.01
    batch_size: int = 64
    buffer_size: int = 2000
    sigma: float = 0.5
    sigma_decay: float = 0.95
    # the decayed sigma never falls below this (the paper: 0, so late episodes repeat the actor's policy)
    sigma_min: float = 0.0
    baseline_decay: float = 0.5
    # "episode": the average moves with each episode's reward; "batch": with each sampled batch's mean reward
    # (the authors' code, which averages over the replay buffer rather than the latest episodes)
    baseline: str = "episode"
    # "uniform": warm-up actions uniform in [lbound, 1] (the authors' code); "noise": the learning phase's
    # truncated normal around the (untrained) actor with sigma 0.5 (the paper)
    warmup_actions: str = "uniform"
    # which action a transition records: "applied" (after the action wall) or "proposed" (the agent's own,
    # before the wall, as the authors' code stores it)
    learn_from: str = "applied"
    # "none": rewards less the baseline (the paper); "spread" (tfmc's default): also divided by the standard
    # deviation of the episode rewards so far, so that the critic's targets have unit scale
    reward_scale: str = "spread"
    # DDPG updates per transition of the episode (the paper: 1)
    updates: int = 1
    # the critic's target: "bootstrap" (the paper: reward + Q of the next step, discount 1, so a step's value
    # adds the rewards of the steps after it) or "reward" (tfmc's default: every transition ends its own target,
    # Q(s, a) estimates the episode's reward itself, which every transition carries) or "final" (the episode
    # reward on the last transition only, bootstrapped back through the episode with discount 1)
    targets: str = "reward"

    def __post_init__(self):
        if self.baseline not in ("episode", "batch"):
            raise UsageError(f"baseline must be 'episode' or 'batch', got {self.baseline!r}")
        if self.warmup_actions not in ("uniform", "noise"):
            raise UsageError(f"warmup_actions must be 'uniform' or 'noise', got {self.warmup_actions!r}")
        if self.learn_from not in ("applied", "proposed"):
            raise UsageError(f"learn_from must be 'applied' or 'proposed', got {self.learn_from!r}")
        if self.reward_scale not in ("none", "spread"):
            raise UsageError(f"reward_scale must be 'none' or 'spread', got {self.reward_scale!r}")
        if self.targets not in ("bootstrap", "reward", "final"):
            raise UsageError(f"targets must be 'bootstrap', 'reward' or 'final', got {self.targets!r}")
        if self.targets == "final" and self.baseline == "batch":
            raise UsageError("targets='final' needs baseline='episode' (a batch mean would mix in the zero rewards)")
        if not 0.0 <= self.sigma_min <= self.sigma:
            raise UsageError(f"sigma_min must be in [0, sigma={self.sigma}], got {self.sigma_min!r}")
        if int(self.updates) != self.updates or self.updates < 1:
            raise UsageError(f"updates must be a whole number >= 1, got {self.updates!r}")

    def as_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


class ReplayBuffer:
    """Transitions (observation, action, reward, next observation, done) in a ring of ``capacity``."""

    def __init__(self, capacity, observation_size):
        self.capacity = int(capacity)
        self.observation = np.zeros((capacity, observation_size), np.float32)
        self.action = np.zeros((capacity, 1), np.float32)
        self.reward = np.zeros(capacity, np.float32)
        self.next_observation = np.zeros((capacity, observation_size), np.float32)
        self.done = np.zeros(capacity, np.float32)
        self.size = 0
        self.position = 0

    def add(self, observation, action, reward, next_observation, done):
        i = self.position
        self.observation[i], self.action[i, 0], self.reward[i] = observation, action, reward
        self.next_observation[i], self.done[i] = next_observation, float(done)
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng, batch_size):
        index = rng.integers(0, self.size, batch_size)
        return (self.observation[index], self.action[index], self.reward[index], self.next_observation[index],
                self.done[index])

    def save(self, path):
        with open(path, "wb") as f:
            np.savez(f, observation=self.observation, action=self.action, reward=self.reward,
                     next_observation=self.next_observation, done=self.done,
                     meta=np.array([self.size, self.position]))

    def load(self, path):
        with np.load(path) as stored:
            for name in ("observation", "action", "reward", "next_observation", "done"):
                getattr(self, name)[...] = stored[name]
            self.size, self.position = (int(v) for v in stored["meta"])


def truncated_normal(rng, mean, sigma, low, high):
    """One draw of a normal(mean, sigma) truncated to [low, high], by the inverse CDF (one uniform)."""
    a, b = special.ndtr((low - mean) / sigma), special.ndtr((high - mean) / sigma)
    if b - a < 1e-12:  # the mean lies far outside the interval: the nearest end is all that is left
        return float(np.clip(mean, low, high))
    value = mean + sigma * special.ndtri(a + rng.uniform() * (b - a))
    return float(np.clip(value, low, high))


class AmcAgent:
    """DDPG for AMC: act, remember episodes, learn after each one, save and restore everything.

    Args:
      observation_spec, action_spec: the environment's array specs (the
        action is one keep ratio bounded to [lbound, 1]).
      config: AgentConfig.
      seed: seeds the networks' initialisation and the agent's Generator.

    Example:
      >>> agent = AmcAgent(env.observation_spec(), env.action_spec(), AgentConfig(), seed=0)
      >>> ratio = agent.act(observation, episode=0, warmup=100)
    """

    def __init__(self, observation_spec, action_spec, config=None, seed=0):
        from tf_agents.agents.ddpg import actor_network, critic_network, ddpg_agent
        from tf_agents.specs import tensor_spec
        from tf_agents.trajectories import time_step as ts
        from tf_agents.utils import common

        self.config = config or AgentConfig()
        self.low, self.high = float(action_spec.minimum), float(action_spec.maximum)
        keras.utils.set_random_seed(seed)
        observation_tensor_spec = tensor_spec.from_spec(observation_spec)
        action_tensor_spec = tensor_spec.from_spec(action_spec)
        hidden = tuple(self.config.hidden)
        actor = actor_network.ActorNetwork(observation_tensor_spec, action_tensor_spec, fc_layer_params=hidden)
        critic = critic_network.CriticNetwork(
            (observation_tensor_spec, action_tensor_spec),
            observation_fc_layer_params=hidden[:1],
            joint_fc_layer_params=hidden[1:],
        )
        self.ddpg = ddpg_agent.DdpgAgent(
            ts.time_step_spec(observation_tensor_spec),
            action_tensor_spec,
            actor_network=actor,
            critic_network=critic,
            actor_optimizer=keras.optimizers.Adam(self.config.actor_lr),
            critic_optimizer=keras.optimizers.Adam(self.config.critic_lr),
            target_update_tau=self.config.tau,
            target_update_period=1,
            gamma=1.0,
            td_errors_loss_fn=common.element_wise_squared_loss,
            train_step_counter=tf.Variable(0, dtype=tf.int64),
        )
        self.ddpg.initialize()
        # Slots exist before any restore, so a resumed search and a fresh one train the same variables.
        self.ddpg._actor_optimizer.build(actor.trainable_variables)
        self.ddpg._critic_optimizer.build(critic.trainable_variables)
        self._actor = actor
        # One traced graph for an episode's updates. Without autograph: converting TF-Agents' and Keras' training
        # code took 8 of the 11 s the first update of a search spent tracing (the graph is the same: nothing in
        # it branches on a tensor in Python; the loop is an explicit tf.while_loop).
        self._train_steps = tf.function(self._train_steps_graph, autograph=False)
        self._q = tf.function(lambda obs, act: self.ddpg._critic_network((obs, act), step_type=(), training=False)[0],
                              autograph=False)
        self.buffer = ReplayBuffer(self.config.buffer_size, observation_spec.shape[0])
        self.rng = np.random.default_rng(seed)
        self.baseline = None
        self.rewards = [0, 0.0, 0.0]  # count, mean and sum of squared deviations of the episode rewards (Welford)
        self._ts = ts
        self._refresh_actor()

    def sigma(self, episode, warmup):
        """Exploration sigma of ``episode`` (0-based): sigma0 * decay ** (episodes since warm-up), at least sigma_min."""
        return max(self.config.sigma * self.config.sigma_decay ** max(episode - warmup, 0), self.config.sigma_min)

    def act(self, observation, episode, warmup):
        """The keep ratio to try: uniform in warm-up (by default), else the actor's plus truncated-normal noise."""
        if episode < warmup and self.config.warmup_actions == "uniform":
            return float(self.rng.uniform(self.low, self.high))
        return truncated_normal(self.rng, self.actor_action(observation), self.sigma(episode, warmup), self.low,
                                self.high)

    def actor_action(self, observation):
        """The actor's keep ratio for one observation, computed in numpy from a copy of its weights.

        The actor is a small MLP (ReLU hidden layers, a tanh output scaled
        to [low, high]); one TF call per step cost more than the rest of
        the step.
        """
        h = np.asarray(observation, np.float32)
        *hidden, kernel, bias = self._actor_weights
        for w, b in zip(hidden[::2], hidden[1::2]):
            h = np.maximum(h @ w + b, 0.0)
        out = np.tanh(h @ kernel + bias)
        return float(self.low + (self.high - self.low) * (out.reshape(-1)[0] + 1.0) / 2.0)

    def _refresh_actor(self):
        self._actor_weights = [v.numpy() for v in self._actor.variables]

    def remember(self, transitions, reward):
        """Store an episode's (observation, action, next observation, done) with its final reward; update the baseline."""
        for observation, action, next_observation, done in transitions:
            carried = 0.0 if self.config.targets == "final" and not done else reward
            self.buffer.add(observation, action, carried, next_observation, done or self.config.targets == "reward")
        count, mean, m2 = self.rewards
        count += 1
        delta = reward - mean
        mean += delta / count
        self.rewards = [count, mean, m2 + delta * (reward - mean)]
        if self.config.baseline == "episode" or self.baseline is None:  # "batch": the first reward until a batch
            decay = self.config.baseline_decay
            self.baseline = reward if self.baseline is None else decay * self.baseline + (1 - decay) * reward

    def reward_spread(self):
        """The standard deviation of the episode rewards so far (1 until two differ)."""
        count, _, m2 = self.rewards
        spread = math.sqrt(m2 / (count - 1)) if count > 1 else 0.0
        return spread if spread > 1e-12 else 1.0

    def learn(self, steps):
        """``steps`` x ``config.updates`` DDPG updates on batches from the buffer, rewards less the baseline.

        With ``reward_scale="spread"`` the centred rewards are also divided by
        the spread of the episode rewards (``reward_spread``).

        Returns:
          {"loss": mean critic + actor loss, "critic_loss", "actor_loss"}
          (means over the updates); NaNs for ``steps`` 0.
        """
        steps *= int(self.config.updates)
        if not steps:
            return {"loss": float("nan"), "critic_loss": float("nan"), "actor_loss": float("nan")}
        batches = [self.buffer.sample(self.rng, self.config.batch_size) for _ in range(steps)]
        obs, action, reward, next_obs, done = (np.stack(part) for part in zip(*batches))
        if self.config.baseline == "batch":
            centred = np.empty_like(reward)
            started = int(self.ddpg.train_step_counter.numpy()) > 0
            for i, batch in enumerate(reward):  # the authors' order: move the average, then subtract it
                if started or i:
                    self.baseline += (1 - self.config.baseline_decay) * (float(batch.mean()) - self.baseline)
                else:  # the first batch of the search starts the average
                    self.baseline = float(batch.mean())
                centred[i] = batch - np.float32(self.baseline)
        elif self.config.targets == "final":  # only the last transitions carry the reward; the others stay 0
            centred = np.where(done > 0, reward - np.float32(self.baseline), np.float32(0.0))
        else:
            centred = reward - np.float32(self.baseline)
        if self.config.reward_scale == "spread":
            centred = centred / np.float32(self.reward_spread())
        losses = self._train_steps(obs, action, centred, next_obs, done)
        self._refresh_actor()
        return {name: float(np.mean(value.numpy())) for name, value in zip(("loss", "critic_loss", "actor_loss"), losses)}

    def mean_q(self, observations, actions):
        """The critic's mean Q value of (observation, action) pairs (in the units of the centred, scaled reward)."""
        obs = tf.constant(np.asarray(observations, np.float32))
        act = tf.constant(np.asarray(actions, np.float32).reshape(-1, 1))
        return float(np.mean(self._q(obs, act).numpy()))

    def _train_steps_graph(self, obs, action, reward, next_obs, done):
        """One DdpgAgent.train per leading index of the stacked batches, in order, inside one graph."""
        from tf_agents.trajectories import policy_step, trajectory

        steps = tf.shape(obs)[0]
        batch = tf.shape(obs)[1]

        def update(i, *losses):
            first = self._ts.TimeStep(
                step_type=tf.fill([batch], self._ts.StepType.MID), reward=tf.zeros([batch]),
                discount=tf.ones([batch]), observation=obs[i],
            )
            last = tf.where(done[i] > 0, self._ts.StepType.LAST, self._ts.StepType.MID)
            second = self._ts.TimeStep(step_type=last, reward=reward[i], discount=1.0 - done[i],
                                       observation=next_obs[i])
            experience = trajectory.Transition(first, policy_step.PolicyStep(action[i]), second)
            info = self.ddpg.train(experience)
            parts = (info.loss, info.extra.critic_loss, info.extra.actor_loss)
            return (i + 1, *(array.write(i, value) for array, value in zip(losses, parts)))

        losses = [tf.TensorArray(tf.float32, size=steps) for _ in range(3)]
        _, *losses = tf.while_loop(lambda i, *_: i < steps, update, (tf.constant(0), *losses))
        return [array.stack() for array in losses]

    # ---- checkpoints ------------------------------------------------------------
    def _variables(self):
        """Every variable of the agent in a fixed order: networks, target networks, optimizers, step counter."""
        d = self.ddpg
        networks = (d._actor_network, d._critic_network, d._target_actor_network, d._target_critic_network)
        return ([v for net in networks for v in net.variables] + list(d._actor_optimizer.variables)
                + list(d._critic_optimizer.variables) + [d.train_step_counter])

    def save(self, directory):
        """Write networks, optimizers and buffer into ``directory``; return the JSON-able rest of the state."""
        variables = self._variables()
        floats = self._flat_floats().numpy()  # one conversion, one plain .npy: checkpointing runs every episode
        with open(os.path.join(directory, "agent.npy"), "wb") as f:
            np.save(f, floats)
        self.buffer.save(os.path.join(directory, "replay.npz"))
        return {"rng": self.rng.bit_generator.state, "baseline": self.baseline, "rewards": list(self.rewards),
                "counters": [int(v.numpy()) for v in variables if not v.dtype.is_floating]}

    @tf.function
    def _flat_floats(self):
        return tf.concat([tf.reshape(v, [-1]) for v in self._variables() if v.dtype.is_floating], axis=0)

    def restore(self, directory, state):
        """Undo ``save``: read ``directory`` and the state it returned."""
        variables = self._variables()
        floats = np.load(os.path.join(directory, "agent.npy"))
        sizes = [int(np.prod(v.shape)) for v in variables if v.dtype.is_floating]
        if len(floats) != sum(sizes) or len(state["counters"]) != len(variables) - len(sizes):
            raise OutputError(f"{directory} holds an agent of another shape; it cannot be restored here")
        chunks = iter(np.split(floats, np.cumsum(sizes)[:-1]))
        counters = iter(state["counters"])
        for variable in variables:
            if variable.dtype.is_floating:
                variable.assign(next(chunks).reshape(variable.shape))
            else:
                variable.assign(next(counters))
        self._refresh_actor()
        self.buffer.load(os.path.join(directory, "replay.npz"))
        self.rng.bit_generator.state = state["rng"]
        self.baseline = state["baseline"]
        self.rewards = list(state.get("rewards", [0, 0.0, 0.0]))
