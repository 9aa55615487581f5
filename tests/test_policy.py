"""PrunePolicy / BitPolicy validation and JSON round-trips."""
import math

import pytest

from tfmc.policy import BitPolicy, PrunePolicy, kept_channels


def test_prune_policy_round_trips(tmp_path):
    policy = PrunePolicy({"conv1": 0.5, "conv2": 1.0}, round_to=4, metadata={"macs": 123})
    path = policy.to_json(tmp_path / "p.json")
    assert PrunePolicy.from_json(path) == policy
    assert PrunePolicy.from_json(path).keep_ratios == {"conv1": 0.5, "conv2": 1.0}


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.01, math.nan, "half", True])
def test_prune_policy_rejects_bad_ratio(bad):
    with pytest.raises(ValueError, match=r"keep ratio for 'c' must be (a number )?in \(0, 1\]"):
        PrunePolicy({"c": bad})


def test_kind_mismatch_is_named(tmp_path):
    path = BitPolicy({"c": (8, 8)}).to_json(tmp_path / "b.json")
    with pytest.raises(ValueError, match="expected a policy of kind 'prune', got kind 'bits'"):
        PrunePolicy.from_json(path)


@pytest.mark.parametrize(
    "channels, ratio, round_to, kept",
    [(64, 0.5, 8, 32), (64, 0.3, 8, 16), (64, 0.2, 8, 16), (64, 0.01, 8, 8), (5, 0.5, 8, 5), (10, 0.25, 1, 3), (10, 0.01, 1, 1), (24, 1.0, 8, 24), (10, 1.0, 8, 10),
     (10, 0.99, 8, 8)],
)
def test_kept_channels_rounding(channels, ratio, round_to, kept):
    assert kept_channels(channels, ratio, round_to) == kept


def test_bit_policy_validates_and_round_trips(tmp_path):
    policy = BitPolicy({"a": (4, 8), "b": {"weight_bits": 8, "activation_bits": 8}})
    assert BitPolicy.from_json(policy.to_json(tmp_path / "b.json")) == policy
    assert policy["a"].weight_bits == 4
    with pytest.raises(ValueError, match="layer 'x': weight_bits must be in 2..16, got 1"):
        BitPolicy({"x": (1, 8)})
    with pytest.raises(ValueError, match="layer 'x': activation_bits must be in 2..16, got 32"):
        BitPolicy({"x": (8, 32)})
