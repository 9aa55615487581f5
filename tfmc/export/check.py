"""Check an exported .tflite against its Keras model: it loads in LiteRT and agrees on top-1."""
import dataclasses

import numpy as np

from tfmc.errors import ExportError


@dataclasses.dataclass
class Agreement:
    """Top-1 agreement of the .tflite with the Keras model on ``samples`` inputs.

    ``near_ties`` counts samples whose Keras top-1 and top-2 outputs are so
    close that float rounding alone may swap them; ``max_abs_diff`` is the
    largest output difference (after dequantizing int8 outputs).
    """

    samples: int
    agree: int
    near_ties: int
    max_abs_diff: float

    @property
    def rate(self):
        return self.agree / self.samples if self.samples else 1.0

    def __str__(self):
        return f"{self.agree}/{self.samples} top-1 agree (max |diff| {self.max_abs_diff:.3g})"


def _quantize(x, detail):
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if not np.issubdtype(dtype, np.integer):
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(y, detail):
    scale, zero_point = detail["quantization"]
    if np.issubdtype(np.dtype(detail["dtype"]), np.integer) and scale:
        return (y.astype(np.float32) - zero_point) * scale
    return y.astype(np.float32)


def tflite_outputs(interpreter, samples):
    """Run a single-input interpreter on each sample (batch 1); float outputs stacked on axis 0."""
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    outputs = []
    for sample in samples:
        interpreter.set_tensor(inp["index"], _quantize(sample[None], inp))
        interpreter.invoke()
        outputs.append(_dequantize(interpreter.get_tensor(out["index"]), out)[0])
    return np.stack(outputs)


def _clear_cut(ref, tie_tolerance):
    """Samples whose top-1 beats top-2 by more than ``tie_tolerance`` x max|output|."""
    if ref.shape[1] < 2:
        return np.ones(len(ref), bool)
    top2 = np.sort(ref, axis=-1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) > tie_tolerance * np.maximum(np.abs(ref).max(-1), 1e-12)


def top1_agreement(keras_outputs, tflite_outputs_, tie_tolerance):
    """Compare argmax over the last axis; returns (Agreement, per-sample agree mask, clear-cut mask)."""
    ref = np.asarray(keras_outputs, np.float32).reshape(len(keras_outputs), -1)
    got = np.asarray(tflite_outputs_, np.float32).reshape(len(ref), -1)
    agree = ref.argmax(-1) == got.argmax(-1)
    clear = _clear_cut(ref, tie_tolerance)
    agreement = Agreement(
        samples=len(ref), agree=int(agree.sum()), near_ties=int((~clear).sum()),
        max_abs_diff=float(np.abs(ref - got).max()) if ref.size else 0.0,
    )
    return agreement, agree, clear


def check_tflite(model, tflite_bytes, samples, *, exact, tie_tolerance):
    """Load ``tflite_bytes`` in LiteRT and measure its top-1 agreement with ``model`` on ``samples``.

    Args:
      model: the Keras model the file was converted from.
      tflite_bytes: the converted model.
      samples: float inputs, N x input shape.
      exact: require agreement on every sample that is not a near tie.
      tie_tolerance: relative top-1/top-2 gap under which a sample is a near tie.

    Returns:
      Agreement.

    Raises:
      ExportError: LiteRT cannot load or run the model, or ``exact`` and a
        clear-cut sample disagrees.
    """
    from tflite_bench.host import load_interpreter
    from tflite_bench.result import BenchError

    try:
        interpreter = load_interpreter(tflite_bytes, threads=1)
        got = tflite_outputs(interpreter, samples)
    except (BenchError, RuntimeError) as exc:
        raise ExportError(f"the exported model does not run in LiteRT: {exc}") from exc
    reference = model(samples, training=False)
    reference = reference[0] if isinstance(reference, (list, tuple)) else reference
    agreement, agree, clear = top1_agreement(np.asarray(reference), got, tie_tolerance)
    if exact:
        wrong = np.flatnonzero(~agree & clear)
        if wrong.size:
            raise ExportError(
                f"the float export disagrees with the Keras model on top-1 for samples {wrong.tolist()} "
                f"({agreement}); this is a conversion bug, not rounding"
            )
    return agreement
