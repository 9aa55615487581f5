"""The GMPQ search: a mixed-precision supernet trained with CE + lambda*L_attr + cd*L_comp.

Wang et al., "Generalizable Mixed-Precision Quantization via Attribution Rank
Preservation", ICCV 2021. The supernet is a copy of the user's model whose
Conv2D / DepthwiseConv2D / Dense layers hold logits over candidate bit widths
(tfmc.gmpq.layers); weights and logits step together (single-level, one
backward pass). The float model is the frozen teacher whose Grad-CAM maps the
supernet imitates. The policy is the per-layer argmax of the logits, repaired
greedily until it fits the user's budget: BOPs, or bytes / milliseconds read
from a precision table measured on the target (tfmc.gmpq.costs).
"""
import dataclasses
import math
import sys
import time

import numpy as np

from tfmc import bops as bops_lib
from tfmc import cost
from tfmc import data as data_lib
from tfmc._keras import keras, require_graph_model, tf
from tfmc.errors import BudgetError, DataError, PolicyError, UsageError
from tfmc.gmpq import attribution
from tfmc.gmpq import run as gmpq_run
from tfmc.gmpq.layers import MIXED_CLASSES
from tfmc.gmpq.spaces import DEFAULT_SPACE, check_space, layer_candidates
from tfmc.policy import BitPolicy
from tfmc.progress import bar as progress_bar
from tfmc.quant.configs import kernel_spec
from tfmc.train import make_strategy, outputs_probabilities


# Pixels of random shift for image search data: the authors' CIFAR-10 search crops with padding 4.
DEFAULT_SHIFT = 4
# Spaces in which every searched layer may also stay float (weights FLOAT_BITS): partial quantization. The
# qat and mixed exports keep such a layer float wherever it sits, with QUANTIZE / DEQUANTIZE only at its
# float-int8 boundaries (tfmc.export).
FLOAT_SPACES = ("litert",)
FLOAT_BITS = bops_lib.FLOAT_BITS
# What a budget is counted in: BOPs from MACs, or a precision table's measured bytes / milliseconds.
MEASURES = ("bops", "bytes", "ms")


@dataclasses.dataclass
class Budget:
    """What a space allows for a model: per-layer MACs and candidates, and BOPs anchors."""

    space: str
    macs: dict  # layer name -> MACs, every layer with multiplies
    candidates: dict  # searched layer name -> (weight bits, activation bits), in graph order
    int8_bops: int  # every layer that can hold bits at 8/8, the rest float
    min_bops: int  # every searched layer at its smallest candidates, the rest float
    max_bops: int  # every searched layer at its largest candidates, the rest float
    measure: str = "bops"  # what ``cost`` counts: "bops", or "bytes" / "ms" from ``table``
    table: object = None  # a tfmc.gmpq.costs.PrecisionTable (measures bytes and ms)
    notes: list = dataclasses.field(default_factory=list)  # candidates rounded to what the target runs

    def bops(self, policy):
        return bops_lib.bops_of(self.macs, policy)

    def layer_cost(self, name, weight_bits, activation_bits):
        """Cost of layer ``name`` at these bits in the budget's measure (weight FLOAT_BITS: float)."""
        if self.measure == "bops":
            if weight_bits == FLOAT_BITS:
                return float(self.macs[name] * FLOAT_BITS * FLOAT_BITS)
            return float(self.macs[name] * weight_bits * activation_bits)
        return self.table.layer_cost(self.measure, name, weight_bits)

    def cost(self, policy):
        """Cost of a BitPolicy (layers it leaves out are float) in the budget's measure."""
        if self.measure == "bops":
            return float(self.bops(policy))
        return self.table.cost(self.measure, {name: bits.weight_bits for name, bits in policy.items()})

    def _extreme(self, pick):
        rest = self.cost(BitPolicy({})) - sum(self.layer_cost(n, FLOAT_BITS, FLOAT_BITS) for n in self.candidates)
        return rest + sum(pick(self.layer_cost(n, w, a) for w in ws for a in acts)
                          for n, (ws, acts) in self.candidates.items())

    @property
    def min_cost(self):
        """The smallest cost any policy of the candidates reaches."""
        return self._extreme(min)

    @property
    def int8_cost(self):
        """The cost at 8 / 8: ``int8_bops`` for BOPs; else every layer of the space at int8, the rest float."""
        if self.measure == "bops":
            return float(self.int8_bops)
        return self.cost(BitPolicy({n: (8, 8) for n in self.candidates}))


def space_budget(model, space=DEFAULT_SPACE, fixed_bits=None, measure="bops", table=None):
    """The Budget of ``model`` in ``space`` (see Budget).

    In the spaces of FLOAT_SPACES every searched layer may also stay float
    (weight candidate FLOAT_BITS). With a precision ``table``
    (measures "bytes" and "ms") every candidate is rounded to what LiteRT
    stores on the target (``round_to_table``), and ``notes`` say where.

    Args:
      model: the float model.
      space: a search space name.
      fixed_bits: optional {layer name: (weight bits, activation bits)} for
        layers of the space held at those bits instead of searched (their one
        candidate each); e.g. the stem and the classifier at 8 bits, as the
        GMPQ authors keep them at high precision.
      measure: one of MEASURES; "bytes" and "ms" need ``table``.
      table: a tfmc.gmpq.costs.PrecisionTable measured on the target.

    Raises:
      ValueError: unknown space, no layer of the model can be searched, or a
        fixed layer that the space does not search (or bits outside 2..16),
        or a measure without its table.
    """
    check_space(space)
    if measure not in MEASURES:
        raise UsageError(f"measure must be one of {MEASURES}, got {measure!r}")
    if (measure == "bops") != (table is None):
        raise UsageError(f"measure {measure!r} {'needs' if table is None else 'takes no'} precision table")
    macs = cost.macs_by_layer(model)
    candidates = {}
    for layer in model.layers:
        found = layer_candidates(space, layer)
        if found is not None and macs.get(layer.name, 0) > 0:
            candidates[layer.name] = found
    if not candidates:
        raise PolicyError(f"model {model.name!r} has no Conv2D, DepthwiseConv2D or Dense layer to search bit widths for")
    fixed = BitPolicy(dict(fixed_bits or {}))
    unknown = sorted(set(fixed) - set(candidates))
    if unknown:
        raise PolicyError(f"fixed_bits names layers that space {space!r} does not search in model {model.name!r}: "
                         f"{unknown}; searched layers: {list(candidates)}")
    if space in FLOAT_SPACES:
        for name in set(candidates) - set(fixed):
            candidates[name] = (candidates[name][0] + (FLOAT_BITS,), candidates[name][1])
    for name in fixed:
        candidates[name] = ((fixed[name].weight_bits,), (fixed[name].activation_bits,))
    notes = []
    if table is not None:
        candidates, notes = round_to_table(candidates, table, latency=measure == "ms")
    pick = lambda index: BitPolicy({n: (w[index], a[index]) for n, (w, a) in candidates.items()  # noqa: E731
                                    if w[index] != FLOAT_BITS})
    int8 = bops_lib.uniform_policy(model, 8, 8)
    return Budget(space, macs, candidates, bops_lib.bops_of(macs, int8), bops_lib.bops_of(macs, pick(0)),
                  bops_lib.bops_of(macs, pick(-1)), measure, table, notes)


def round_to_table(candidates, table, latency=False):
    """Candidates rounded to what LiteRT stores and runs fast on the table's target, with a note per change.

    Activations become 8 bits (LiteRT's integer kernels take 8-bit
    activations). A weight width becomes the width of the precision LiteRT
    stores it in (``tfmc.gmpq.costs.precision_of``: 2-4 -> 4 where the op has
    int4, else 8; 5-8 -> 8), and int4 becomes 8 where the table measures it
    slower than int8 (an int4 CONV_2D runs the reference kernel) or has no
    int4 for the layer (DEPTHWISE_CONV_2D). Float (FLOAT_BITS) stays, except
    under a ``latency`` budget: there it stays only on the first and last
    layers (``candidates`` in graph order), and only where the table
    measures float clearly faster than int8 (by more than the table's
    tolerance). The table times each layer alone, so it leaves out the
    DEQUANTIZE and QUANTIZE that a float layer between int8 layers adds (on
    the Fashion-MNIST MobileNetV2 of BENCHMARKS.md five such layers made the
    file 1.02x slower than all-int8 although their estimate was faster); at
    an end, the float layer only moves the model's own QUANTIZE or
    DEQUANTIZE.

    Returns:
      ({layer: (weight bits, activation bits)}, [notes]).
    """
    from tfmc.gmpq.costs import OPS, precision_of

    rounded, notes = {}, []
    ends = {next(iter(candidates)), list(candidates)[-1]} if candidates else set()
    for name, (weights, activations) in candidates.items():
        kind = table.layers[name]["kind"] if name in table.layers else None
        if kind is None:
            raise UsageError(f"the precision table has no layer {name!r} (was it measured on another model?)")
        new_weights = []
        for bits in weights:
            precision = precision_of(kind, bits)
            to = {"float32": FLOAT_BITS, "int8": 8, "int4": 4}[precision]
            why = f"{OPS[kind]} stores {bits}-bit weights as {precision}" if to != bits and bits != FLOAT_BITS else ""
            if bits <= 4 and precision != "int4":
                why = f"{OPS[kind]} has no int4 kernel in LiteRT"
            if to == 4 and table.slower_than_int8(name, "int4"):
                ms = table.layers[name]["ms"]
                where = table.metadata.get("target", "the target")
                to, why = 8, (f"int4 {OPS[kind]} measured slower than int8 on {where}"
                              + (f": {ms['int4'] * 1e3:.1f} vs {ms['int8'] * 1e3:.1f} us" if "int4" in ms else ""))
            if to != bits and bits != FLOAT_BITS:
                notes.append(f"{name}: {bits}-bit weights -> {to} ({why})")
            new_weights.append(to if bits != FLOAT_BITS else FLOAT_BITS)
        if latency and FLOAT_BITS in new_weights and name not in ends:
            new_weights.remove(FLOAT_BITS)
            notes.append(f"{name}: float dropped under a latency budget (a float layer between int8 layers adds a "
                         "DEQUANTIZE and a QUANTIZE that the table does not time)")
        elif latency and FLOAT_BITS in new_weights and not table.faster_than_int8(name, "float32"):
            ms = table.layers[name]["ms"]
            new_weights.remove(FLOAT_BITS)
            notes.append(f"{name}: float dropped under a latency budget (float32 {OPS[kind]} not measured clearly "
                         f"faster than int8: {ms['float32'] * 1e3:.1f} vs {ms['int8'] * 1e3:.1f} us)")
        if any(a != 8 for a in activations):
            notes.append(f"{name}: activations {list(activations)} -> 8 bits (LiteRT integer kernels take 8-bit "
                         "activations)")
        rounded[name] = (tuple(sorted(set(new_weights))), (8,))
    return rounded, notes


def end_layers(model, space=DEFAULT_SPACE):
    """Names of the first and the last layer that ``space`` searches in ``model`` (graph order).

    GMPQ's authors keep these (the stem, reading the image, and the
    classifier) at high precision; pass them to ``search(fixed_bits=...)``.

    Example:
      >>> fixed = {name: (8, 8) for name in end_layers(model, "gmpq")}
    """
    names = list(space_budget(model, space).candidates)
    return [names[0], names[-1]] if len(names) > 1 else names


def resolve_target(target, budget):
    """Absolute BOPs for ``target``: a fraction of the 8-bit BOPs when <= 1, else absolute.

    Raises:
      ValueError: a target that is not positive, or below the minimum the
        smallest candidates allow (the message gives that minimum).
    """
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not target > 0 or math.isinf(target):
        raise BudgetError(f"target BOPs must be a positive number (a fraction of 8-bit BOPs if <= 1), got {target!r}")
    absolute = int(target * budget.int8_bops) if target <= 1 else int(target)
    if absolute < budget.min_bops:
        raise BudgetError(
            f"target of {absolute:,} BOPs ({absolute / budget.int8_bops:.3f} of 8-bit) is below the minimum "
            f"{budget.min_bops:,} BOPs ({budget.min_bops / budget.int8_bops:.3f} of 8-bit) that the smallest "
            f"candidates of space {budget.space!r} allow"
        )
    return absolute


def resolve_cost_target(target, budget):
    """The budget in bytes or milliseconds, checked against what the candidates can reach.

    Under a latency budget the target is at most the all-int8 latency: a
    policy slower than uniform int8 is never the answer (float layers then
    enter only where faster choices elsewhere pay for them).

    Raises:
      BudgetError: a target that is not positive, or below the smallest cost
        the candidates reach (the message gives that smallest cost).
    """
    unit = {"bytes": "bytes", "ms": "ms"}[budget.measure]
    what = {"bytes": "size", "ms": "latency"}[budget.measure]
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not target > 0 or math.isinf(target):
        raise BudgetError(f"the {what} budget must be a positive number of {unit}, got {target!r}")
    smallest, int8 = budget.min_cost, budget.int8_cost
    show = (lambda v: f"{v:,.0f} bytes") if unit == "bytes" else (lambda v: f"{v:.4f} ms")  # noqa: E731
    if target < smallest:
        lowest = ("every layer at its smallest precision LiteRT runs fast (int4 only where the op has a fast "
                  "int4 kernel, else int8)") if unit == "bytes" else "the fastest precision of each layer"
        raise BudgetError(f"the {what} budget of {show(target)} is below the smallest achievable {show(smallest)} "
                          f"({lowest}; all-int8: {show(int8)}), from the precision table measured on "
                          f"{budget.table.metadata.get('target', 'the target')}")
    if budget.measure == "ms" and target > int8:
        budget.notes.append(f"latency budget {show(target)} capped at the all-int8 {show(int8)}: a policy slower "
                            "than uniform int8 is never the answer")
        return float(int8)
    return float(target)


def build_supernet(model, budget, calibration, dropout_seed=0):
    """A copy of ``model`` with its searched layers replaced by mixed-precision layers.

    Weights are copied; ``model`` is not changed. Each mixed layer's input
    quantizer is signed when its input went negative on ``calibration`` and
    its clip starts at the 99.9th percentile of the input's magnitude.
    Dropout layers draw from a seeded tf.random.Generator (``dropout_seed``
    plus the layer's index) whose state a search checkpoint can save.
    """
    names = list(budget.candidates)
    probe = keras.Model(model.inputs, [model.get_layer(n).input for n in names])
    inputs = probe(calibration, training=False)
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    stats = {}
    for name, value in zip(names, inputs):
        value = np.asarray(value)
        clip = float(np.percentile(np.abs(value), 99.9))
        stats[name] = (bool(value.min() < 0), clip if clip > 0 else 1.0)

    dropouts = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Dropout)]

    def clone(layer):
        if layer.name in dropouts:  # a generator's state is a variable; Keras' default stateful ops have none
            seed = layer.seed if layer.seed is not None else dropout_seed + dropouts.index(layer.name)
            return layer.__class__.from_config({**layer.get_config(), "seed": seed, "rng_type": "stateful"})
        if layer.name not in budget.candidates:
            return layer.__class__.from_config(layer.get_config())
        weight_bits, activation_bits = budget.candidates[layer.name]
        signed, clip = stats[layer.name]
        return MIXED_CLASSES[type(layer)].from_config({
            **layer.get_config(), "weight_bits": weight_bits, "activation_bits": activation_bits,
            "signed_input": signed, "activation_clip": clip, "per_axis": kernel_spec(layer)[1],
        })

    net = keras.models.clone_model(model, clone_function=clone)
    for source, target in zip(model.layers, net.layers):
        for variable, value in zip(target.weights, source.get_weights()):
            variable.assign(value)
    return net


@dataclasses.dataclass
class SearchResult:
    """What a GMPQ search found, and what it cost.

    Attributes:
      policy: the BitPolicy (within the budget); its metadata repeats the figures below.
      history: one dict per epoch (losses, exponent p, cd, expected and argmax BOPs).
      search_seconds: wall time of the whole search (supernet, teacher maps, training, repair).
      target_bops / achieved_bops / int8_bops / min_bops: BOPs of the budget (None under a
        bytes or ms budget), the policy, all layers at 8/8, and the smallest candidates.
      repairs: the (layer, "weight"|"activation", from bits, to bits) steps that brought
        the argmax policy within the budget (the steps that used leftover budget are in
        ``policy.metadata["raises"]``).
      samples: how many training samples the search saw.
      supernet: the trained mixed-precision model.
      measure / target / achieved / int8_cost: the budget's measure ("bops", "bytes", "ms"),
        its target, the policy's cost and the all-int8 cost in it.
      epochs_done / complete / out_dir: epochs trained (a resumed run's included), whether all
        were, and the run folder (``search(out_dir=)``).
    """

    policy: BitPolicy
    history: list
    search_seconds: float
    target_bops: int
    achieved_bops: int
    int8_bops: int
    min_bops: int
    repairs: list
    samples: int
    supernet: object = None
    measure: str = "bops"  # what the budget counted: "bops", "bytes" or "ms"
    target: float = None  # the budget in its measure (under "ms", capped at all-int8)
    achieved: float = None  # the policy's cost in that measure
    int8_cost: float = None  # every layer of the space at 8 / 8, in that measure
    epochs_done: int = None  # epochs trained, counting those of a resumed run
    complete: bool = True  # False when ``stop_after`` ended the call before the last epoch
    out_dir: str = None  # the run folder, if any


def _as_arrays(data):
    data = data_lib.as_arrays(data, "data", labels=True)
    x, y = (data.x_train, data.y_train) if hasattr(data, "x_train") else data
    x, y = np.asarray(x, np.float32), np.asarray(y)
    data_lib.check_finite(None, "the search images", x)
    data_lib.check_labels(None, "the search labels", y)
    return x, y.astype(np.int64)


def teacher_maps(model, x, batch_size=128):
    """Grad-CAM maps of the float model on ``x`` at its last conv feature map (numpy, N x H x W)."""
    features = attribution.feature_model(model)
    return np.concatenate(
        [attribution.attribution_map(features, x[i:i + batch_size])[0].numpy() for i in range(0, len(x), batch_size)]
    )


def _probabilities(layers):
    return {layer.name: [p.numpy() for p in layer.bit_probabilities()] for layer in layers}


def argmax_policy(layers):
    """The per-layer argmax of the weight and activation logits, as a BitPolicy (float choices left out)."""
    choices = {}
    for layer in layers:
        pw, pa = (p.numpy() for p in layer.bit_probabilities())
        choices[layer.name] = (layer.weight_bits[int(np.argmax(pw))], layer.activation_bits[int(np.argmax(pa))])
    return _as_policy(choices)


def _bit_moves(bits, probabilities, budget, step):
    """Every one-candidate change of one layer's weight or activation bits (step -1 lower, +1 higher).

    Each move is (margin, BOPs change, layer, slot, kind, new bits), where margin is
    how much more likely the current choice is than the new one under the logits.
    """
    moves = []
    for name, (w, a) in bits.items():
        for slot, kind in enumerate(("weight", "activation")):
            options = budget.candidates[name][slot]
            index = options.index(bits[name][slot])
            if not 0 <= index + step < len(options):
                continue
            probs = probabilities[name][slot]
            margin = float(probs[index] - probs[index + step])
            new = [w, a]
            new[slot] = options[index + step]
            delta = budget.layer_cost(name, *new) - budget.layer_cost(name, w, a)
            moves.append((margin, delta, name, slot, kind, options[index + step]))
    return moves


def _as_bits(policy, budget=None):
    """{layer: [weight bits, activation bits]}; with ``budget``, its float-capable layers the policy leaves out are float."""
    bits = {name: [policy[name].weight_bits, policy[name].activation_bits] for name in policy}
    for name, (weights, activations) in (budget.candidates.items() if budget else ()):
        if name not in bits and FLOAT_BITS in weights:
            bits[name] = [FLOAT_BITS, activations[-1]]
    return bits


def _as_policy(bits):
    """The BitPolicy of ``bits``; layers at FLOAT_BITS stay float, so the policy leaves them out."""
    return BitPolicy({n: tuple(b) for n, b in bits.items() if b[0] != FLOAT_BITS})


def repair_policy(policy, probabilities, budget, target):
    """Lower bits until ``policy`` fits ``target`` (in the budget's measure), where the logits are least sure first.

    Each step lowers one layer's weight or activation bits to the next smaller
    candidate; the step taken is the one whose current choice has the smallest
    probability margin over that smaller candidate (ties: the larger BOPs
    saving). It always ends within budget when ``target >= budget.min_bops``.

    Returns:
      (repaired BitPolicy, [(layer, "weight"|"activation", from bits, to bits)]).
    """
    bits, steps = _as_bits(policy, budget), []
    while budget.cost(_as_policy(bits)) > target:
        moves = [m for m in _bit_moves(bits, probabilities, budget, -1) if m[1] < 0]
        if not moves:
            raise BudgetError(f"cannot reach {target:,} {budget.measure}: every layer is at its smallest candidate")
        _, _, name, slot, kind, lower = min(moves)
        steps.append((name, kind, bits[name][slot], lower))
        bits[name][slot] = lower
    return _as_policy(bits), steps


def fill_policy(policy, probabilities, budget, target):
    """Raise bits while the policy stays within ``target`` (budget's measure), where the logits are least sure first.

    The argmax policy can land well under the budget (the logits move the
    argmax before the soft BOPs reach the target); unused budget is accuracy
    left on the table. Each step raises the (layer, weights or activations)
    whose current choice is least preferred over the next larger candidate
    and still fits (ties: the smaller BOPs increase).

    Returns:
      (filled BitPolicy, [(layer, "weight"|"activation", from bits, to bits)]).
    """
    bits, steps = _as_bits(policy, budget), []
    used = budget.cost(_as_policy(bits))
    while True:
        moves = [m for m in _bit_moves(bits, probabilities, budget, +1) if used + m[1] <= target]
        if not moves:
            return _as_policy(bits), steps
        _, delta, name, slot, kind, higher = min(moves)
        steps.append((name, kind, bits[name][slot], higher))
        bits[name][slot] = higher
        used += delta


def search(model, data, *, target_bops=None, target_bytes=None, target_ms=None, table=None, space=DEFAULT_SPACE,
           fixed_bits=None, search_fraction=0.1, epochs=25,
           batch_size=32, attribution_weight=20.0, complexity_weight=3e-4, adapt_complexity=True, exponent="capacity",
           rho=24.0, weight_lr=1e-3, alpha_lr=0.1, momentum=0.9, weight_decay=1e-4, train_mode=True, random_shift=None,
           seed=0, strategy=None, out_dir=None, resume=False, stop_after=None, verbose=True, log=None, progress=None):
    """Search per-layer bit widths with GMPQ and return a policy within a BOPs budget.

    The loss is CE + lambda * L_attr + cd * L_comp (Wang et al., ICCV 2021):
    L_attr compares the Grad-CAM map of the supernet with the frozen float
    model's map raised to the exponent p (capacity-aware: p = rho * mean over
    layers of 1/(E[b_w] E[b_a]); or a fixed number), and L_comp =
    sum_l MACs_l E[b_w,l] E[b_a,l] / MACs of the first layer. Weights step
    with SGD (momentum, weight decay) and the bit logits with their own SGD;
    both learning rates fall x0.1 every 10 epochs. With ``adapt_complexity``
    cd is tuned during the search: after every step it is scaled up while
    the expected BOPs exceed the target and down while below. At the end the
    argmax policy is repaired greedily (``repair_policy``) so it never
    exceeds the target, then raised where budget is left (``fill_policy``).

    Args:
      model: the trained float tf_keras model (functional or Sequential, one
        output, a conv layer before the classifier). It is not changed.
      data: a tfmc.data.Dataset (its training split is used), (x, y) arrays or a
        tf.data.Dataset of (image, label) pairs (read to the end).
      target_bops: a fraction of the model's 8-bit BOPs (<= 1) or absolute BOPs.
      target_bytes: instead, a model size budget in bytes (the .tflite's
        estimate from ``table``: its layers at their precisions plus the rest).
      target_ms: instead, a latency budget in milliseconds (the sum of the
        layers' latencies in ``table``); capped at the all-int8 latency, so
        the policy is never slower than uniform int8.
      table: a tfmc.gmpq.costs.PrecisionTable measured on the target, for
        ``target_bytes`` / ``target_ms``. The supernet's complexity term is
        then the expected measured cost (sum over candidates of their
        probability times their cost), and candidates are rounded to what
        LiteRT runs fast on the target (``round_to_table``; the policy's
        metadata "rounded" lists each change).
      space: "litert" (weights 8 on Conv2D and depthwise, {4, 8} on Dense,
        activations 8, and float for the first and last searched layers) or
        "gmpq" (weights and activations {2, 3, 4, 6}).
      fixed_bits: {layer name: (weight bits, activation bits)} held fixed
        instead of searched (counted in the BOPs and written in the policy),
        e.g. ``end_layers`` at 8 bits as the paper keeps stem and classifier.
      search_fraction: the share of the training data the search learns on.
      epochs, batch_size: search length.
      attribution_weight: lambda (0 disables attribution: the ablation).
      complexity_weight: cd, or its start value with ``adapt_complexity``.
      adapt_complexity: tune cd towards the target during the search.
      exponent: "capacity" for the capacity-aware p, or a fixed positive p.
      rho: scale of the capacity-aware exponent (24 in the paper).
      weight_lr, alpha_lr, momentum, weight_decay: the two SGD optimizers (weights start
        trained, hence a smaller lr than the paper's 0.1 from scratch).
      train_mode: run the supernet in training mode, as the authors' search does:
        BatchNorm normalises with each batch's statistics (and updates its moving
        averages), dropout is active. False keeps the float model's BatchNorm
        statistics; the low-bit paths then train much worse (docs/mixed-precision.md).
      random_shift: move each search image by a random offset of up to this many
        pixels every time it is read (tfmc.data.random_shift), as the authors'
        CIFAR-10 search reads random crops with 4 pixels of padding; the float
        model's maps are then computed for each shifted batch. None (default):
        4 for image inputs (N x H x W x C; less for images under 10 pixels),
        0 otherwise; 0 reads the images as they are.
      seed: data subset, shuffling and initial state.
      strategy: a tf.distribute.Strategy or its name (tfmc.train.make_strategy); None is the default.
      out_dir: a folder for the search's run (tfmc.runs.RunFolder, counted in epochs): a checkpoint after
        every epoch (the supernet, both optimizers, cd and the dropout generators' states), history.jsonl /
        history.csv, TensorBoard scalars under tensorboard/, and when the search is complete policy.json,
        bits.png and plots of its history. None keeps everything in memory (no resume).
      resume: continue the search checkpointed in ``out_dir``; it continues exactly as the uninterrupted
        search would (same policy and history). Refused when the folder's search had other inputs (the
        error names them); the number of epochs may be raised.
      stop_after: train at most this many epochs in this call, then return the policy of the supernet so
        far (``complete`` False); a later call with ``resume=True`` goes on.
      verbose, log: one progress line per epoch to ``log`` (default stderr).
      progress: a stage name: one bar over every search step on stderr
        (``tfmc.progress.bar``) with the last epoch's figures beside it.

    Returns:
      A SearchResult.

    Raises:
      ValueError: an unknown space, a target below the smallest candidates'
        BOPs (the message names the minimum), a model without a conv layer,
        or a bad fraction / exponent / random_shift / stop_after.
      OutputError: ``out_dir`` holds a search and ``resume`` is False, or it
        holds a search of other inputs.

    Example:
      >>> result = tfmc.gmpq.search(model, tfmc.data.load("digits"), target_bops=0.6)
      >>> result.policy.to_json("bits.json"); result.achieved_bops <= result.target_bops
      True
    """
    start = time.perf_counter()
    log = log or sys.stderr
    require_graph_model(model)
    if not 0 < search_fraction <= 1:
        raise UsageError(f"search_fraction must be in (0, 1], got {search_fraction!r}")
    capacity = exponent == "capacity"
    if not capacity and (isinstance(exponent, str) or not exponent > 0):
        raise UsageError(f"exponent must be 'capacity' or a positive number, got {exponent!r}")
    if stop_after is not None and (int(stop_after) != stop_after or stop_after < 1):
        raise UsageError(f"stop_after must be a whole number of epochs >= 1, got {stop_after!r}")
    feature_name = attribution.feature_layer(model)
    budget, measure, target = _budget(model, space, fixed_bits, table, target_bops, target_bytes, target_ms)
    if verbose:
        for note in budget.notes:
            print(f"gmpq: {note}", file=log, flush=True)
    searched = [n for n in budget.candidates if n not in (fixed_bits or {})]

    x, y = _search_subset(data, search_fraction, seed)
    shift = _check_shift(random_shift, x)
    batch = min(batch_size, len(x))
    steps_per_epoch = len(x) // batch
    strategy = make_strategy(strategy)
    replicas = strategy.num_replicas_in_sync
    run, resumed = gmpq_run.open_run(out_dir, gmpq_run.fingerprint(model, x, y, budget, target, {
        "fixed_bits": {n: list(b) for n, b in sorted((fixed_bits or {}).items())}, "batch_size": int(batch),
        "attribution_weight": float(attribution_weight), "complexity_weight": float(complexity_weight),
        "adapt_complexity": bool(adapt_complexity), "exponent": exponent if capacity else float(exponent),
        "rho": float(rho), "weight_lr": float(weight_lr), "alpha_lr": float(alpha_lr), "momentum": float(momentum),
        "weight_decay": float(weight_decay), "train_mode": bool(train_mode), "random_shift": shift,
        "seed": int(seed), "replicas": int(replicas),
    }), resume)
    # Shifted images need the teacher's maps of each shifted batch; otherwise they are computed once.
    teacher_per_batch = shift > 0 and attribution_weight > 0
    precomputed = attribution_weight > 0 and not teacher_per_batch
    teacher = teacher_maps(model, x) if precomputed else np.zeros((len(x), 1, 1), np.float32)
    teacher_features = attribution.feature_model(model) if teacher_per_batch else None
    keras.utils.set_random_seed(seed)

    with strategy.scope():
        net = build_supernet(model, budget, x[: min(len(x), 256)], dropout_seed=seed)
        student = attribution.feature_model(net, feature_name)
        mixed = [net.get_layer(n) for n in budget.candidates]
        alphas = [v for layer in mixed for v in layer.architecture_variables]
        alpha_ids = {id(v) for v in alphas}
        weights = [v for v in net.trainable_variables if id(v) not in alpha_ids]

        def schedule(lr):
            bounds = [10 * steps_per_epoch, 20 * steps_per_epoch]
            return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, [lr, lr * 0.1, lr * 0.01])

        weight_opt = keras.optimizers.SGD(schedule(weight_lr), momentum=momentum, weight_decay=weight_decay)
        alpha_opt = keras.optimizers.SGD(schedule(alpha_lr), momentum=momentum)
        # built now (not at the first step) so a checkpoint's slots exist before it is restored
        weight_opt.build(weights)
        alpha_opt.build(alphas)
        cd = tf.Variable(float(complexity_weight), trainable=False, dtype=tf.float32)
        generators = _dropout_states(net)  # created in the scope, as the strategy's replicas read them
    state = list(net.weights) + list(weight_opt.variables) + list(alpha_opt.variables) + [cd] + generators

    costs, scale = _cost_matrices(budget)
    from_probabilities = outputs_probabilities(model)
    lam = float(attribution_weight)

    def replica_step(xb, yb, tb):
        if teacher_per_batch:
            tb = tf.stop_gradient(attribution.attribution_map(teacher_features, xb)[0])
        with tf.GradientTape() as tape:
            if lam > 0:
                maps, scores = attribution.attribution_map(student, xb, training=train_mode)
            else:
                scores = student(xb, training=train_mode)[1]
            ce = keras.losses.sparse_categorical_crossentropy(yb, scores, from_logits=not from_probabilities)
            expected = [layer.expected_bits() for layer in mixed]
            # E[cost] of each layer: its candidates' costs weighted by their probabilities (for BOPs,
            # MACs x E[b_w] x E[b_a] as in the paper).
            comp = tf.add_n([tf.reduce_sum(c * pw[:, None] * pa[None, :])
                             for c, (pw, pa) in zip(costs, (m.bit_probabilities() for m in mixed))]) / scale
            # p measures the capacity the search chooses: fixed layers do not enter it
            capacity_bits = [e for e, n in zip(expected, budget.candidates) if n in searched] or expected
            p = attribution.capacity_exponent(capacity_bits, rho) if capacity else tf.constant(float(exponent))
            attr = attribution.attribution_loss(tb, maps, p, per_sample=True) if lam > 0 else tf.zeros_like(ce)
            loss = (tf.reduce_sum(ce) + lam * tf.reduce_sum(attr)) / float(batch * replicas) + cd * comp / replicas
        grads = tape.gradient(loss, weights + alphas)
        weight_opt.apply_gradients([(g, v) for g, v in zip(grads[: len(weights)], weights) if g is not None])
        alpha_opt.apply_gradients([(g, v) for g, v in zip(grads[len(weights):], alphas) if g is not None])
        return tf.reduce_sum(ce), tf.reduce_sum(attr), comp, p

    # No tensor-dependent Python control flow in the step: skipping autograph's
    # conversion halves the trace of the double-backprop graph (about 20 s to 10 s
    # on 2 CPU cores), a fixed cost that dominates a search on a small subset.
    @tf.function(autograph=False)
    def train_step(xb, yb, tb):
        ce, attr, comp, p = strategy.run(replica_step, args=(xb, yb, tb))
        total = lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)  # noqa: E731
        mean = lambda v: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)  # noqa: E731
        return total(ce), total(attr), mean(comp), mean(p)

    dataset = _search_dataset(x, y, teacher, shift, batch, seed, strategy)
    history = []
    if resumed is not None:
        gmpq_run.restore_variables(state, resumed.directory)
        history = resumed.history
        for _ in range(len(history)):  # the shuffle and the shifts continue where the checkpoint left them
            for _ in dataset:
                pass
    int8_cost = budget.int8_cost
    ran = 0
    bar = progress_bar(progress, epochs * steps_per_epoch, enabled=progress is not None,
                       initial=len(history) * steps_per_epoch)
    while len(history) < epochs and (stop_after is None or ran < stop_after):
        tick = time.perf_counter()
        sums = np.zeros(4)
        for xb, yb, tb in dataset:
            ce, attr, comp, p = (float(v) for v in train_step(xb, yb, tb))
            sums += (ce, attr, comp, p)
            expected_cost = _expected_cost(mixed, budget)
            if adapt_complexity:
                # Multiplicative tuning of cd: the soft cost is pulled to the target.
                cd.assign(float(np.clip(cd.numpy() * math.exp(0.2 * (expected_cost / target - 1.0)), 1e-9, 1e3)))
            bar.update(1)
        n = steps_per_epoch * batch
        argmax_cost = budget.cost(argmax_policy(mixed))
        row = {
            "epoch": len(history) + 1, "ce": sums[0] / n, "attr": sums[1] / n, "comp": sums[2] / steps_per_epoch,
            "p": sums[3] / steps_per_epoch, "cd": float(cd.numpy()),
            f"expected_{measure}": _rounded(expected_cost, measure), f"argmax_{measure}": _rounded(argmax_cost, measure),
            "seconds": time.perf_counter() - tick,
        }
        history.append(row)
        ran += 1
        if run:
            gmpq_run.record(run, row, state, {})
        bar.set_postfix(ce=f"{row['ce']:.4f}", cost=f"{expected_cost / int8_cost:.3f} of int8")
        if verbose:
            print(
                f"gmpq epoch {row['epoch']}/{epochs}  ce {row['ce']:.4f}  attr {row['attr']:.4f}  p {row['p']:.2f}  "
                f"cd {row['cd']:.2e}  E[{measure}] {expected_cost / int8_cost:.3f}  argmax "
                f"{argmax_cost / int8_cost:.3f} of 8-bit (target {target / int8_cost:.3f})  "
                f"{row['seconds']:.1f}s",
                file=log, flush=True,
            )

    bar.close()
    chosen = argmax_policy(mixed)
    probabilities = _probabilities(mixed)
    policy, repairs = repair_policy(chosen, probabilities, budget, target)
    policy, raises = fill_policy(policy, probabilities, budget, target)
    achieved = budget.bops(policy)
    cost = budget.cost(policy)
    seconds = time.perf_counter() - start
    target_bops = target if measure == "bops" else None
    policy.metadata.update({
        "method": "gmpq", "space": space, "target_bops": target_bops, "achieved_bops": achieved,
        "int8_bops": budget.int8_bops, "fraction_of_int8": cost / int8_cost,
        "measure": measure, "target": _rounded(target, measure), "achieved": _rounded(cost, measure),
        "int8_cost": _rounded(int8_cost, measure), "float_layers": [n for n in budget.candidates if n not in policy],
        "rounded": list(budget.notes),
        "fixed_bits": {n: list(b) for n, b in _as_bits(BitPolicy(dict(fixed_bits or {}))).items()},
        "search_fraction": search_fraction, "search_samples": int(len(x)), "search_seconds": seconds,
        "epochs": len(history), "attribution_weight": lam, "exponent": exponent, "train_mode": bool(train_mode),
        "random_shift": shift,
        "final_cd": float(cd.numpy()),
        "argmax_bops": budget.bops(chosen), "repairs": [list(r) for r in repairs],
        "raises": [list(r) for r in raises],
    })
    if run and len(history) >= epochs:
        gmpq_run.finish(run, policy, history, measure)
    return SearchResult(policy, history, seconds, target_bops, achieved, budget.int8_bops, budget.min_bops, repairs,
                        int(len(x)), net, measure, target, cost, int8_cost, epochs_done=len(history),
                        complete=len(history) >= epochs, out_dir=run.dir if run else None)


def _budget(model, space, fixed_bits, table, target_bops, target_bytes, target_ms):
    """The search's Budget, its measure and the target in it, from the one budget argument given."""
    given = {m: v for m, v in zip(MEASURES, (target_bops, target_bytes, target_ms)) if v is not None}
    if len(given) != 1:
        raise UsageError("give one budget: target_bops, target_bytes or target_ms")
    measure = next(iter(given))
    if (measure == "bops") != (table is None):
        raise UsageError(f"a budget in {measure} {'needs' if table is None else 'takes no'} precision table "
                         "(tfmc.gmpq.costs.build_precision_table)")
    budget = space_budget(model, space, fixed_bits, measure, table)
    target = resolve_target(target_bops, budget) if measure == "bops" else resolve_cost_target(given[measure], budget)
    return budget, measure, target


def _search_subset(data, fraction, seed):
    """The share ``fraction`` of the training images the search learns on (seeded, in their original order)."""
    x, y = _as_arrays(data)
    return data_lib.seeded_subset(x, y, max(1, int(math.ceil(fraction * len(x)))), seed)


def _search_dataset(x, y, teacher, shift, batch, seed, strategy):
    """The search's batches of (image, label, teacher map): reshuffled every epoch, images shifted as they are read."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y, teacher)).shuffle(len(x), seed=seed)
    if shift > 0:
        shifts = tf.random.Generator.from_seed(seed)
        dataset = dataset.map(lambda xi, yi, ti: (data_lib.random_shift(xi, shift, shifts), yi, ti))
    dataset = dataset.batch(batch, drop_remainder=True)
    return strategy.experimental_distribute_dataset(dataset)


def _dropout_states(net):
    """The state variables of the supernet's dropout generators (stateful, see ``build_supernet``)."""
    states = []
    for layer in net.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer._random_generator._maybe_init()
            states.append(layer._random_generator._generator.state)
    return states


def _check_shift(random_shift, x):
    """The shift in pixels for search images ``x``.

    None means DEFAULT_SHIFT for images (N x H x W x C), less where that is not
    below half the image size, and 0 for other inputs.
    """
    images = x.ndim == 4
    if random_shift is None:
        return min(DEFAULT_SHIFT, (min(x.shape[1:3]) - 1) // 2) if images else 0
    if isinstance(random_shift, bool) or not isinstance(random_shift, (int, np.integer)) or random_shift < 0:
        raise UsageError(f"random_shift must be a whole number of pixels >= 0, got {random_shift!r}")
    if random_shift > 0 and not images:
        raise DataError(f"random_shift moves images (N x H x W x C); the search data has shape {x.shape}")
    if random_shift > 0 and 2 * random_shift >= min(x.shape[1:3]):
        raise UsageError(f"random_shift must be below half the image size; {random_shift} pixels for "
                         f"{x.shape[1]}x{x.shape[2]} images")
    return int(random_shift)


def _rounded(value, measure):
    return int(round(value)) if measure in ("bops", "bytes") else float(value)


def _cost_matrices(budget):
    """Per searched layer, its cost at each (weight, activation) candidate pair, and the scale comp divides by.

    For BOPs the scale is the first layer's MACs (the authors' normalisation);
    for a measured cost it is chosen so the all-int8 comp equals the BOPs
    comp at all-int8, so one complexity weight fits every measure.
    """
    costs = [tf.constant([[budget.layer_cost(n, w, a) for a in acts] for w in ws], tf.float32)
             for n, (ws, acts) in budget.candidates.items()]
    first = float(budget.macs[next(iter(budget.candidates))])
    if budget.measure == "bops":
        return costs, first
    int8 = sum(budget.layer_cost(n, 8, 8) for n in budget.candidates)
    int8_bops = sum(budget.macs[n] * 64.0 for n in budget.candidates)
    return costs, int8 / (int8_bops / first)


def _expected_cost(mixed, budget):
    """Cost with each searched layer at its expected candidate cost (the rest float), in the budget's measure."""
    rest = budget.cost(BitPolicy({})) - sum(budget.layer_cost(n, FLOAT_BITS, FLOAT_BITS) for n in budget.candidates)
    total = rest
    for layer in mixed:
        pw, pa = (p.numpy() for p in layer.bit_probabilities())
        ws, acts = budget.candidates[layer.name]
        total += sum(pw[i] * pa[j] * budget.layer_cost(layer.name, w, a)
                     for i, w in enumerate(ws) for j, a in enumerate(acts))
    return float(total)
