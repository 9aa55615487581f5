"""Least-squares refit of the layers that lost input channels.

After a layer loses input channels, its kernel is re-fitted so that its
linear output (before bias, BN and activation) on calibration data matches
what the unpruned layer produced from the unpruned inputs (He et al., AMC,
ECCV 2018, following He et al., Channel Pruning, ICCV 2017). The authors fit
1x1 convolutions and dense layers only; here a k x k convolution is fitted
through im2col: each row is the k*k*c' patch under one sampled output
position, and the solution is an ordinary least-squares fit with no
intercept. Inputs of the pruned model are taken after earlier refits, so
errors do not pile up layer after layer.
"""
import numpy as np

from tfmc._keras import keras, tf
from tfmc.layers import handler_for


def _as_array(calib_data, max_images):
    if isinstance(calib_data, tf.data.Dataset):
        chunks, total = [], 0
        for batch in calib_data:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            chunks.append(np.asarray(x))
            total += len(chunks[-1])
            if total >= max_images:
                break
        calib_data = np.concatenate(chunks)
    elif isinstance(calib_data, (tuple, list)):
        calib_data = calib_data[0]
    x = np.asarray(calib_data, dtype=np.float32)
    return x[:max_images]


def refittable(layer):
    """Whether consumer ``layer`` can be refitted (its handler says: Dense, or Conv2D with groups=1)."""
    return handler_for(layer).refittable(layer)


def _same_padding(size, out, kernel, stride, dilation):
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2


RIDGE = 1e-6


def patch_positions(layer, input_shape, points_per_image, rng):
    """Where the sampled im2col rows of ``layer`` come from, for inputs of ``input_shape`` (N, H, W, C).

    Draws ``points_per_image`` distinct output positions per image (all of
    them when the map is smaller). Returns ``(pads, index)``: the input is
    zero-padded by ``pads`` ([[0, 0], [top, bottom], [left, right], [0, 0]])
    and ``index`` (rows, kh * kw, 3) holds (image, row, column) of every
    kernel tap of every sampled position in the padded input. A Dense
    layer, or a non-spatial input, returns None: every position is a row.
    """
    if len(input_shape) != 4 or isinstance(layer, keras.layers.Dense):
        return None
    n, height, width, _ = input_shape
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    dh, dw = layer.dilation_rate
    if layer.padding == "same":
        out_h, out_w = -(-height // sh), -(-width // sw)
        top, left = _same_padding(height, out_h, kh, sh, dh), _same_padding(width, out_w, kw, sw, dw)
    else:
        out_h, out_w = (height - (kh - 1) * dh - 1) // sh + 1, (width - (kw - 1) * dw - 1) // sw + 1
        top = left = 0
    pads = [[0, 0], [top, kh * dh], [left, kw * dw], [0, 0]]
    points = min(points_per_image, out_h * out_w)
    picks = np.stack([rng.choice(out_h * out_w, points, replace=False) for _ in range(n)])
    images = np.repeat(np.arange(n), points)
    rows, cols = (picks // out_w).reshape(-1) * sh, (picks % out_w).reshape(-1) * sw
    taps = [np.stack([images, rows + i * dh, cols + j * dw], axis=-1) for i in range(kh) for j in range(kw)]
    return pads, np.stack(taps, axis=1)


def gather_patches(x, positions):
    """The rows ``patch_positions`` describes, taken from ``x`` (numpy): (rows, kh * kw * C)."""
    if positions is None:
        return x.reshape(-1, x.shape[-1])
    pads, index = positions
    padded = np.pad(x, pads)
    taps = padded[index[..., 0], index[..., 1], index[..., 2], :]
    return taps.reshape(len(index), -1)


def sampled_patches(layer, x, points_per_image, rng):
    """im2col rows of ``x`` under ``layer`` at ``points_per_image`` random output positions per image.

    Only the sampled patches are gathered, so memory grows with the number
    of rows, not with the feature map. A row is laid out (kh, kw, channels),
    the order of ``kernel.reshape(-1, out_channels)``; a Dense input gives
    its rows as they are.
    """
    return gather_patches(x, patch_positions(layer, x.shape, points_per_image, rng))


def least_squares(rows, target):
    """Kernel rows w minimising |rows @ w - target|^2, by the normal equations with a tiny ridge.

    The ridge (RIDGE times the mean diagonal of rows^T rows) only matters
    when there are fewer independent rows than unknowns, where it gives
    the small-norm solution; the in-graph solver of the AMC search
    (``tfmc.amc.masked``) uses the same formula, so a searched policy is
    scored with the kernels ``tfmc.prune`` will fit.
    """
    rows = np.asarray(rows, np.float64)
    gram = rows.T @ rows
    ridge = RIDGE * max(np.trace(gram) / max(len(gram), 1), 1e-12)
    return np.linalg.solve(gram + ridge * np.eye(len(gram)), rows.T @ np.asarray(target, np.float64))


def consumer_seeds(analysis, seed):
    """A sampling seed per prunable consumer that does not depend on the policy: ``seed`` + its index."""
    return {name: seed + i for i, name in enumerate(analysis.prunable_consumers())}


def refit_layer(layer, original_kernel, kept_inputs, kept_outputs, x_original, x_pruned, *, points_per_image=10, seed=0):
    """Least-squares kernel of a pruned conv / dense layer.

    Args:
      layer: the pruned layer (Conv2D with groups=1, or Dense); it gets the
        new kernel.
      original_kernel: the unpruned layer's kernel.
      kept_inputs, kept_outputs: positions of the original input / output
        channels the pruned layer keeps.
      x_original: the unpruned layer's inputs on calibration images.
      x_pruned: the pruned layer's inputs on the same images.
      points_per_image: sampled output positions per image (AMC: 10).

    Returns:
      The relative squared error of the fit on the sampled rows.
    """
    positions = patch_positions(layer, x_original.shape, points_per_image, np.random.default_rng(seed))
    rows_original = gather_patches(x_original, positions)
    a = gather_patches(x_pruned, positions).astype(np.float64)
    w = original_kernel.reshape(-1, original_kernel.shape[-1])[:, kept_outputs].astype(np.float64)
    target = rows_original.astype(np.float64) @ w
    solution = least_squares(a, target)
    weights = layer.get_weights()
    weights[0] = solution.reshape(weights[0].shape).astype(weights[0].dtype)
    layer.set_weights(weights)
    residual = a @ solution - target
    return float((residual**2).sum() / max((target**2).sum(), 1e-12))


def reconstruct(original, pruned, analysis, keep, calib_data, *, max_images=3000, points_per_image=10, seed=0):
    """Refit, in topological order, every conv / dense layer of ``pruned`` that lost inputs.

    Args:
      original: the unpruned model (read only).
      pruned: the model built by surgery from ``original``; modified in place.
      analysis: the ChannelGraph of ``original``.
      keep: the {group: mask} used to build ``pruned``.
      calib_data: images (array, (x, y) tuple or tf.data.Dataset of batches).
      max_images: at most this many images are used (AMC samples 3000).
      points_per_image: sampled output positions per image (AMC: 10).

    Returns:
      {layer name: relative squared error of its fit}.
    """
    from tfmc.prune.masking import dropped_input_positions

    x = _as_array(calib_data, max_images)
    order = {}
    for index, call in enumerate(analysis.calls):
        order.setdefault(call.layer.name, index)
    # topological order, so every refit sees the refits before it (group order is not topological)
    targets = sorted(
        (name for name in dropped_input_positions(analysis, keep)
         if refittable(original.get_layer(name))),
        key=order.__getitem__,
    )
    if not targets:
        return {}
    original_inputs = keras.Model(original.inputs, [original.get_layer(n).input for n in targets])
    x_original = original_inputs.predict(x, verbose=0, batch_size=256)
    if len(targets) == 1:
        x_original = [x_original]
    seeds = consumer_seeds(analysis, seed)
    errors = {}
    for index, name in enumerate(targets):
        role = analysis.layer_io(name)
        kept_inputs = analysis.tensor_keep(role["in"][0], keep)
        kept_outputs = analysis.tensor_keep(role["out"][0], keep)
        pruned_input = keras.Model(pruned.inputs, pruned.get_layer(name).input).predict(x, verbose=0, batch_size=256)
        errors[name] = refit_layer(
            pruned.get_layer(name),
            original.get_layer(name).get_weights()[0],
            kept_inputs,
            kept_outputs,
            x_original[index],
            pruned_input,
            points_per_image=points_per_image,
            seed=seeds[name],
        )
    return errors
