"""AMC (He et al., ECCV 2018): a TF-Agents DDPG agent that searches per-group keep ratios under a hard budget.

``search`` runs the whole loop and returns the best PrunePolicy; ``tfmc.prune``
applies it. The pieces stand alone: ``budget`` (costs of a policy and the
action wall), ``env`` (the PyEnvironment), ``agent`` (DDPG, noise, replay),
``masked`` (cheap episodes on one reusable masked copy), ``reward`` (the
reward set scored, under a strategy if given), ``searchers`` (DDPG, random
search, greedy allocation, by name).
"""
from tfmc.amc.agent import AgentConfig, AmcAgent
from tfmc.amc.budget import ActionWall, Budget, CostModel, keep_candidates, make_budget
from tfmc.amc.env import FEATURES, PruningEnv
from tfmc.amc.masked import MaskedModel
from tfmc.amc.reward import RewardEvaluator
from tfmc.amc.search import HISTORY_COLUMNS, REWARDS, SearchResult, search
from tfmc.amc.searchers import SEARCHES, DdpgSearch, GreedySearch, RandomSearch, register_search

__all__ = [
    "ActionWall", "AgentConfig", "AmcAgent", "Budget", "CostModel", "FEATURES", "HISTORY_COLUMNS", "MaskedModel",
    "PruningEnv", "REWARDS", "RewardEvaluator", "SEARCHES", "SearchResult", "DdpgSearch", "GreedySearch",
    "RandomSearch", "keep_candidates", "make_budget", "register_search", "search",
]
