"""GMPQ: attribution-preserving mixed-precision search (Wang et al., ICCV 2021)."""
from tfmc.gmpq.attribution import attribution_loss, attribution_map, capacity_exponent, feature_layer, feature_model
from tfmc.gmpq.costs import PrecisionTable, build_precision_table
from tfmc.gmpq.search import (SearchResult, end_layers, repair_policy, resolve_cost_target, resolve_target, search,
                              space_budget)
from tfmc.gmpq.spaces import DEFAULT_SPACE, SPACES
from tfmc.gmpq.cross_dataset import Deployed, TransferResult, deploy, transfer

__all__ = [
    "DEFAULT_SPACE", "Deployed", "PrecisionTable", "SPACES", "SearchResult", "TransferResult", "attribution_loss",
    "attribution_map", "build_precision_table", "capacity_exponent", "deploy", "end_layers", "feature_layer",
    "feature_model", "repair_policy", "resolve_cost_target", "resolve_target", "search", "space_budget", "transfer",
]
