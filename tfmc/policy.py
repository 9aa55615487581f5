"""PrunePolicy and BitPolicy: the validated, JSON-serialisable hand-off from search to apply."""
import json
import math
import numbers

from tfmc import io as tfmc_io
from tfmc.errors import PolicyError

_FORMAT_VERSION = 1


def _check_ratio(name, ratio):
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or math.isnan(ratio):
        raise PolicyError(f"keep ratio for {name!r} must be a number in (0, 1], got {ratio!r}")
    if not 0.0 < float(ratio) <= 1.0:
        raise PolicyError(f"keep ratio for {name!r} must be in (0, 1], got {ratio!r}")
    return float(ratio)


def kept_channels(channels, keep_ratio, round_to=8):
    """Number of channels a group of ``channels`` keeps at ``keep_ratio``.

    ``max(round(channels * keep_ratio), 1)`` rounded to the nearest multiple of
    ``round_to`` (at least one multiple), never more than ``channels``; a
    keep ratio of 1 keeps every channel (10 channels do not round down to 8). Mobile
    kernels vectorise over 4 or 8 channels, so counts off that grid buy less
    latency than their MACs promise (He et al., AMC, ECCV 2018, section 4).
    """
    if round_to < 1 or int(round_to) != round_to:
        raise PolicyError(f"round_to must be a positive integer, got {round_to!r}")
    keep_ratio = _check_ratio("group", keep_ratio)
    if keep_ratio == 1.0:
        return int(channels)
    kept = max(int(math.floor(channels * keep_ratio + 0.5)), 1)
    if round_to > 1:
        kept = max(int(math.floor(kept / round_to + 0.5)) * round_to, round_to)
    return int(min(kept, channels))


class _JsonPolicy:
    """JSON round-trip and equality shared by the policies (via get_config / from_config)."""

    def to_json(self, path):
        """Write the policy to ``path`` atomically and return the path."""
        return tfmc_io.write_json(path, self.get_config())

    @classmethod
    def from_json(cls, path):
        """Read a policy written by ``to_json``; errors name the file and the problem."""
        return cls.from_config(_read_json(path))

    def __eq__(self, other):
        return type(other) is type(self) and self.get_config() == other.get_config()


class PrunePolicy(_JsonPolicy):
    """Keep ratio per channel group.

    Args:
      keep_ratios: {group name: keep ratio in (0, 1]}. Groups not listed keep
        all their channels.
      round_to: kept channel counts are rounded to multiples of this.
      metadata: free-form JSON-serialisable facts about how the policy was
        made (budget, achieved MACs, reward, ...). Not used when applying.

    Example:
      >>> policy = PrunePolicy({"conv1": 0.5, "conv2": 0.75})
      >>> path = policy.to_json(os.path.join(tmp_dir, "policy.json"))  # returns the path
      >>> PrunePolicy.from_json(path) == policy
      True
    """

    kind = "prune"

    def __init__(self, keep_ratios, round_to=8, metadata=None):
        if not isinstance(keep_ratios, dict):
            raise TypeError(f"keep_ratios must be a dict of group name -> ratio, got {type(keep_ratios).__name__}")
        self.keep_ratios = {str(k): _check_ratio(k, v) for k, v in keep_ratios.items()}
        if isinstance(round_to, bool) or not isinstance(round_to, numbers.Integral) or round_to < 1:
            raise PolicyError(f"round_to must be a positive integer, got {round_to!r}")
        self.round_to = int(round_to)
        self.metadata = dict(metadata or {})

    def get_config(self):
        return {
            "kind": self.kind,
            "version": _FORMAT_VERSION,
            "round_to": self.round_to,
            "keep_ratios": dict(self.keep_ratios),
            "metadata": self.metadata,
        }

    @classmethod
    def from_config(cls, config):
        _check_kind(config, cls.kind)
        return cls(config["keep_ratios"], round_to=config.get("round_to", 8), metadata=config.get("metadata"))

    def __repr__(self):
        return f"PrunePolicy({self.keep_ratios!r}, round_to={self.round_to})"


class LayerBits:
    """Weight and activation bit widths of one layer."""

    __slots__ = ("weight_bits", "activation_bits")

    def __init__(self, weight_bits, activation_bits):
        self.weight_bits = _check_bits("weight_bits", weight_bits)
        self.activation_bits = _check_bits("activation_bits", activation_bits)

    def as_dict(self):
        return {"weight_bits": self.weight_bits, "activation_bits": self.activation_bits}

    def __eq__(self, other):
        return isinstance(other, LayerBits) and self.as_dict() == other.as_dict()

    def __repr__(self):
        return f"LayerBits(w={self.weight_bits}, a={self.activation_bits})"


MIN_BITS, MAX_BITS = 2, 16


def _check_bits(what, bits):
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
        raise PolicyError(f"{what} must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
    if not MIN_BITS <= int(bits) <= MAX_BITS:
        raise PolicyError(f"{what} must be in {MIN_BITS}..{MAX_BITS}, got {bits}")
    return int(bits)


class BitPolicy(_JsonPolicy):
    """Weight and activation bit widths per layer; layers not listed stay float.

    Args:
      layers: {layer name: LayerBits, or (weight_bits, activation_bits), or
        {"weight_bits": w, "activation_bits": a}}. Bits must be in 2..16.
      metadata: free-form JSON-serialisable facts (budget, achieved BOPs...).

    Example:
      >>> policy = BitPolicy({"conv1": (8, 8), "conv2": (4, 8)})
      >>> policy["conv2"].weight_bits
      4
    """

    kind = "bits"

    def __init__(self, layers, metadata=None):
        if not isinstance(layers, dict):
            raise TypeError(f"layers must be a dict of layer name -> bits, got {type(layers).__name__}")
        self.layers = {}
        for name, bits in layers.items():
            try:
                self.layers[str(name)] = _as_layer_bits(bits)
            except ValueError as exc:
                raise PolicyError(f"layer {name!r}: {exc}") from None
        self.metadata = dict(metadata or {})

    def __getitem__(self, name):
        return self.layers[name]

    def __contains__(self, name):
        return name in self.layers

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def items(self):
        return self.layers.items()

    def get_config(self):
        return {
            "kind": self.kind,
            "version": _FORMAT_VERSION,
            "layers": {name: bits.as_dict() for name, bits in self.layers.items()},
            "metadata": self.metadata,
        }

    @classmethod
    def from_config(cls, config):
        _check_kind(config, cls.kind)
        return cls(config["layers"], metadata=config.get("metadata"))

    def __repr__(self):
        return f"BitPolicy({self.layers!r})"


def _as_layer_bits(bits):
    if isinstance(bits, LayerBits):
        return bits
    if isinstance(bits, dict):
        unknown = set(bits) - {"weight_bits", "activation_bits"}
        if unknown:
            raise PolicyError(f"unknown keys {sorted(unknown)}; expected weight_bits and activation_bits")
        return LayerBits(bits.get("weight_bits"), bits.get("activation_bits"))
    if isinstance(bits, (tuple, list)) and len(bits) == 2:
        return LayerBits(*bits)
    raise PolicyError(f"expected (weight_bits, activation_bits), got {bits!r}")


def _check_kind(config, kind):
    if not isinstance(config, dict):
        raise PolicyError(f"a {kind} policy must be a JSON object, got {type(config).__name__}")
    if config.get("kind") != kind:
        raise PolicyError(f"expected a policy of kind {kind!r}, got kind {config.get('kind')!r}")
    if config.get("version", _FORMAT_VERSION) > _FORMAT_VERSION:
        raise PolicyError(f"policy format version {config['version']} is newer than this tfmc ({_FORMAT_VERSION})")


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise PolicyError(f"{path}: not valid JSON ({exc})") from None
