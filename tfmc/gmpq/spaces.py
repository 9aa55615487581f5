"""Search spaces: which bit widths each kind of layer may take."""
from tfmc.layers import handler_for
from tfmc.errors import UsageError

# space -> a handler's bits_kind (tfmc.layers) -> (candidate weight bits, candidate activation bits)
SPACES = {
    # The paper's simulated space (Wang et al., ICCV 2021): {2, 3, 4, 6} for both.
    "gmpq": {
        "conv": ((2, 3, 4, 6), (2, 3, 4, 6)),
        "dense": ((2, 3, 4, 6), (2, 3, 4, 6)),
        "depthwise": ((2, 3, 4, 6), (2, 3, 4, 6)),
    },
    # What LiteRT executes fast: int8 weights and 8-bit activations everywhere, int4 weights only on
    # FULLY_CONNECTED (XNNPACK's only int4 kernel; an int4 CONV_2D runs the reference kernel, about 4x
    # slower than int8 here, tfmc.gmpq.costs). Search adds float for every layer (search.FLOAT_SPACES).
    "litert": {
        "conv": ((8,), (8,)),
        "dense": ((4, 8), (8,)),
        "depthwise": ((8,), (8,)),
    },
}
DEFAULT_SPACE = "litert"


def check_space(space):
    """Return ``space`` if it is a known space name, else raise ValueError listing them."""
    if space not in SPACES:
        raise UsageError(f"unknown search space {space!r}; expected one of {sorted(SPACES)}")
    return space


def searchable(layer):
    """Whether GMPQ can give ``layer`` bit widths (its handler's ``takes_bits``: Conv2D, DepthwiseConv2D, Dense)."""
    return handler_for(layer).takes_bits(layer)


def layer_candidates(space, layer):
    """(weight bit candidates, activation bit candidates) of ``layer`` in ``space``, or None.

    None means the layer is not searched and stays float: layers without
    multiplies, and kinds the mixed-precision layers do not cover
    (SeparableConv2D, Conv1D, Conv3D, transposed convolutions).
    """
    if not searchable(layer):
        return None
    return SPACES[check_space(space)].get(handler_for(layer).bits_kind)
