"""BOPs and packed size under a BitPolicy, against hand counts."""
import pytest

import tfmc  # noqa: F401
from tfmc.bops import count_bops, packed_size_bytes, uniform_policy
from tfmc.policy import BitPolicy
from tiny_models import chain_cnn

# chain_cnn at 16x16x3, by hand: output positions x window x in x out channels
CONV1 = 16 * 16 * 3 * 3 * 3 * 16
CONV2 = 8 * 8 * 3 * 3 * 16 * 24
CONV3 = 4 * 4 * 3 * 3 * 24 * 32
FC1 = 32 * 20
LOGITS = 20 * 10


@pytest.fixture(scope="module")
def model():
    return chain_cnn()


def test_bops_equal_a_hand_count(model):
    policy = BitPolicy({"conv1": (8, 8), "conv2": (4, 2), "logits": (3, 5)})
    expected = CONV1 * 64 + CONV2 * 8 + CONV3 * 32 * 32 + FC1 * 32 * 32 + LOGITS * 15
    assert count_bops(model, policy) == expected


def test_no_policy_counts_every_layer_as_float(model):
    assert count_bops(model) == (CONV1 + CONV2 + CONV3 + FC1 + LOGITS) * 1024


def test_uniform_policy_names_every_layer_with_bits(model):
    policy = uniform_policy(model, 4, 8)
    assert list(policy) == ["conv1", "conv2", "conv3", "fc1", "logits"]
    assert count_bops(model, policy) == (CONV1 + CONV2 + CONV3 + FC1 + LOGITS) * 32


def test_packed_size_counts_kernels_at_their_bits_and_the_rest_at_32(model):
    policy = BitPolicy({"conv2": (4, 8), "logits": (2, 8)})
    kernel_bits = 3 * 3 * 16 * 24 * 4 + 20 * 10 * 2
    other_params = model.count_params() - 3 * 3 * 16 * 24 - 20 * 10
    assert packed_size_bytes(model, policy) == (kernel_bits + other_params * 32 + 7) // 8


def test_unknown_layer_names_are_an_error(model):
    with pytest.raises(ValueError, match=r"the bit policy names layers not in model 'chain': \['conv9'\]"):
        count_bops(model, BitPolicy({"conv9": (4, 4)}))


def test_a_layer_without_bits_is_an_error(model):
    with pytest.raises(ValueError, match="layer 'bn1' is a BatchNormalization; bit widths apply to Conv2D"):
        count_bops(model, BitPolicy({"bn1": (4, 4)}))


def test_bits_outside_2_to_16_are_an_error():
    with pytest.raises(ValueError, match="layer 'conv1': activation_bits must be in 2..16, got 17"):
        BitPolicy({"conv1": (8, 17)})
