"""The report of a compression run (Markdown and self-contained HTML) and the PNG plots it shows.

``write_report(out_dir, results)`` takes one plain dict that the pipeline
fills as it goes. Its schema (every key but ``rows`` may be left out):

    {
      "title":    str,                      # heading; "Compression report" if absent
      "dataset":  str,                      # e.g. "digits (1257 train / 270 val / 270 test)"
      "rows": [                             # one per model, the reference first
        {"model": str,                      # "original", "pruned", "pruned+quantized", ...
         "accuracy": float,                 # top-1 in [0, 1]
         "macs": int, "params": int, "bops": int,
         "tflite_bytes": int,               # size of the exported .tflite
         "latency_ms": float},              # mean inference time
      ],
      "figures":  [{"title": str, "path": str}],  # PNG files (best kept inside out_dir)
      "notes":    [str],                    # one paragraph each
      "commands": [str],                    # the command lines that reproduce the run
    }

A value that is missing or None renders as "–". Sizes (MACs, parameters,
BOPs, .tflite bytes, latency) in rows after the first also show their ratio
to the first row, the reference.

Plots are drawn on a bare matplotlib ``Figure`` (Agg canvas, no pyplot
state, no backend switch) and written atomically: ``plot_bars`` (one or
several series of bars) and ``plot_series`` (lines or points over x).
"""
import base64
import html
import os
import sys

from tfmc import io

MISSING = "–"
ROW_KEYS = ("model", "accuracy", "macs", "params", "bops", "tflite_bytes", "latency_ms")
RESULT_KEYS = ("title", "dataset", "rows", "layers", "figures", "notes", "commands")
# results["layers"]: {"title": str, "rows": [{"layer", "op", "weights", "why"}]}, e.g. what each layer of a
# quantized export became (tfmc.gmpq.explain).
LAYER_KEYS = ("layer", "op", "weights", "why")
# Column heading, and whether the column shows a ratio to the reference row.
_COLUMNS = {
    "model": ("model", False),
    "accuracy": ("accuracy", False),
    "macs": ("MACs", True),
    "params": ("params", True),
    "bops": ("BOPs", True),
    "tflite_bytes": (".tflite size", True),
    "latency_ms": ("latency (ms)", True),
}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _format_count(n):
    """1234567 -> '1.23 M': three significant digits and an SI prefix."""
    n = float(n)
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.3g} {prefix}"
    return f"{n:.0f}"


def _format_bytes(n):
    n = float(n)
    for factor, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{n:.0f} B"


_FORMATS = {
    "model": str,
    "accuracy": lambda a: f"{100 * a:.2f}%",
    "macs": _format_count,
    "params": _format_count,
    "bops": _format_count,
    "tflite_bytes": _format_bytes,
    "latency_ms": lambda ms: f"{ms:.3g}",
}


def format_cell(key, row, reference=None):
    """The text of one table cell: formatted value, its ratio to ``reference``, or "–" when missing.

    Args:
      key: a row key (see ROW_KEYS).
      row: the row dict.
      reference: the first row, for the ratio; None for the first row itself.

    Returns:
      str, e.g. "97.50%", "1.23 M (0.51×)", "–".

    Example:
      >>> format_cell("macs", {"macs": 600_000}, {"macs": 1_200_000})
      '600 k (0.5×)'
    """
    value = row.get(key)
    if value is None:
        return MISSING
    text = _FORMATS[key](value)
    base = None if reference is None else reference.get(key)
    if _COLUMNS[key][1] and base:
        text += f" ({value / base:.2g}×)"
    return text


def _validate(results):
    if not isinstance(results, dict):
        raise ValueError(f"results must be a dict, got {type(results).__name__}")
    unknown = sorted(set(results) - set(RESULT_KEYS))
    if unknown:
        raise ValueError(f"unknown results keys {unknown}; expected some of {', '.join(RESULT_KEYS)}")
    rows = results.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ValueError("results['rows'] must be a non-empty list of dicts, one per model")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("model"), str):
            raise ValueError(f"results['rows'][{i}] must be a dict with a 'model' name")
        unknown = sorted(set(row) - set(ROW_KEYS))
        if unknown:
            raise ValueError(f"unknown keys {unknown} in results['rows'][{i}]; expected some of {', '.join(ROW_KEYS)}")
    for i, figure in enumerate(results.get("figures", [])):
        path = figure.get("path") if isinstance(figure, dict) else None
        if path is None or "title" not in figure:
            raise ValueError(f"results['figures'][{i}] must be a dict with 'title' and 'path'")
        if not os.path.isfile(path):
            raise ValueError(f"figure {path!r} does not exist")
        with open(path, "rb") as f:
            if f.read(len(_PNG_SIGNATURE)) != _PNG_SIGNATURE:
                raise ValueError(f"figure {path!r} is not a PNG file")
    layers = results.get("layers")
    if layers is not None and (not isinstance(layers, dict) or not isinstance(layers.get("title"), str)
                               or not all(isinstance(r, dict) and set(r) == set(LAYER_KEYS) for r in layers.get("rows", []))):
        raise ValueError(f"results['layers'] must be a dict with a 'title' and 'rows' of dicts with keys {LAYER_KEYS}")
    for key in ("notes", "commands"):
        if not all(isinstance(item, str) for item in results.get(key, [])):
            raise ValueError(f"results[{key!r}] must be a list of strings")


def _table(rows):
    """(headings, [cells of each row]) of the results table."""
    headings = [_COLUMNS[k][0] for k in ROW_KEYS]
    cells = [[format_cell(k, row, None if i == 0 else rows[0]) for k in ROW_KEYS] for i, row in enumerate(rows)]
    return headings, cells


def _markdown(results, out_dir):
    title = results.get("title") or "Compression report"
    lines = [f"# {title}", ""]
    if results.get("dataset"):
        lines += [f"Dataset: {results['dataset']}", ""]
    headings, cells = _table(results["rows"])
    lines.append("| " + " | ".join(headings) + " |")
    lines.append("|---" + "|---:" * (len(headings) - 1) + "|")
    for row in cells:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    if len(cells) > 1:
        lines += ["", "In brackets: the ratio to the first row."]
    if results.get("layers"):
        lines += ["", f"## {results['layers']['title']}", "", "| " + " | ".join(LAYER_KEYS) + " |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(str(r[k]).replace("|", "\\|") for k in LAYER_KEYS) + " |"
                  for r in results["layers"]["rows"]]
    if results.get("figures"):
        lines += ["", "## Figures"]
        for figure in results["figures"]:
            link = os.path.relpath(os.path.abspath(figure["path"]), os.path.abspath(out_dir)).replace(os.sep, "/")
            lines += ["", f"### {figure['title']}", "", f"![{figure['title']}]({link})"]
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in results["notes"]]
    if results.get("commands"):
        lines += ["", "## Reproduce", "", "```sh"] + list(results["commands"]) + ["```"]
    return "\n".join(lines) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; }
td { text-align: right; font-variant-numeric: tabular-nums; }
td:first-child, th:first-child { text-align: left; }
th { background: #f0f0f0; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-weight: 600; margin-bottom: 0.4em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
.hint { color: #666; font-size: 0.9em; }
"""


def _html(results):
    e = html.escape
    title = results.get("title") or "Compression report"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may be fetched: images are data URIs and the style is inline.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">",
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    if results.get("dataset"):
        parts.append(f'<p class="dataset">Dataset: {e(results["dataset"])}</p>')
    headings, cells = _table(results["rows"])
    parts.append('<table id="results"><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in headings) + "</tr></thead><tbody>")
    for row in cells:
        parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
    parts.append("</tbody></table>")
    if len(cells) > 1:
        parts.append('<p class="hint">In brackets: the ratio to the first row.</p>')
    if results.get("layers"):
        parts.append(f"<h2>{e(results['layers']['title'])}</h2><table><thead><tr>"
                     + "".join(f"<th>{e(k)}</th>" for k in LAYER_KEYS) + "</tr></thead><tbody>")
        parts += ["<tr>" + "".join(f"<td>{e(str(r[k]))}</td>" for k in LAYER_KEYS) + "</tr>"
                  for r in results["layers"]["rows"]]
        parts.append("</tbody></table>")
    if results.get("figures"):
        parts.append("<h2>Figures</h2>")
        for figure in results["figures"]:
            with open(figure["path"], "rb") as f:
                encoded = base64.b64encode(f.read()).decode("ascii")
            parts.append(
                f'<figure><figcaption>{e(figure["title"])}</figcaption>'
                f'<img alt="{e(figure["title"])}" src="data:image/png;base64,{encoded}"></figure>'
            )
    if results.get("notes"):
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in results["notes"]) + "</ul>")
    if results.get("commands"):
        parts.append("<h2>Reproduce</h2><pre><code>" + e("\n".join(results["commands"])) + "</code></pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(out_dir, results):
    """Write report.md and a self-contained report.html for one compression run.

    Both files are written atomically. report.md links the figures by their
    path relative to ``out_dir``; report.html embeds them as base64 data URIs
    and its CSS inline, so it opens anywhere with no network and no other file.

    Args:
      out_dir: folder to write into (created if missing).
      results: the dict described in this module's docstring.

    Returns:
      (path of report.md, path of report.html).

    Raises:
      ValueError: ``results`` breaks the schema (an unknown key, no rows, a
        row without a model name, a figure that is missing or not a PNG).

    Example:
      >>> run = os.path.join(tmp_dir, "run")
      >>> paths = write_report(run, {"title": "digits CNN", "rows": [
      ...     {"model": "original", "accuracy": 0.975, "macs": 1_200_000},
      ...     {"model": "pruned", "accuracy": 0.968, "macs": 600_000}]})
      >>> [os.path.relpath(path, run) for path in paths]
      ['report.md', 'report.html']
    """
    _validate(results)
    os.makedirs(out_dir, exist_ok=True)
    md_path = os.path.join(out_dir, "report.md")
    html_path = os.path.join(out_dir, "report.html")
    io.write_text(md_path, _markdown(results, out_dir))
    io.write_text(html_path, _html(results))
    return md_path, html_path


def save_figure(figure, path, dpi=110):
    """Write a matplotlib figure to ``path`` as PNG, atomically, and release it.

    Works for a bare ``matplotlib.figure.Figure`` and for one made by pyplot
    (which is then closed, so long runs do not accumulate open figures).

    Returns:
      path.
    """
    with io.atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(figure)
    return path


def _as_series(values, length, what):
    """{name: list} from numbers or a dict of them, each checked to hold ``length`` values."""
    series = {k: list(v) for k, v in values.items()} if isinstance(values, dict) else {None: list(values)}
    for name, numbers in series.items():
        if len(numbers) != length:
            raise ValueError(f"series {name or what[0]!r} has {len(numbers)} values for {length} {what[1]}")
    return series


def _finish(figure, ax, path, title, ylabel, legend):
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend(fontsize=8)
    return save_figure(figure, path)


def _figure(width, height):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    return figure, figure.add_subplot()


def plot_bars(path, labels, values, title, ylabel, *, annotate=True):
    """A bar chart as PNG: one bar per label, or groups of bars when ``values`` is a dict.

    Args:
      path: the PNG to write (atomically).
      labels: the x tick labels.
      values: numbers, one per label; or {series name: numbers} for grouped
        bars with a legend (e.g. {"weights": [...], "activations": [...]}).
      title, ylabel: the texts.
      annotate: print each value above its bar.

    Returns:
      path.

    Raises:
      ValueError: a series has not one value per label.

    Example:
      >>> path = plot_bars(os.path.join(tmp_dir, "acc.png"), ["original", "pruned"], [0.975, 0.968], "Accuracy", "top-1")
      >>> open(path, "rb").read(8) == _PNG_SIGNATURE
      True
    """
    series = _as_series(values, len(labels), ("values", "labels"))
    figure, ax = _figure(max(4.0, 0.6 * len(labels) * max(1, len(series)) ** 0.5 + 2), 3.4)
    width = 0.8 / len(series)
    for k, (name, numbers) in enumerate(series.items()):
        positions = [i - 0.4 + width * (k + 0.5) for i in range(len(labels))]
        bars = ax.bar(positions, numbers, width, label=name)
        if annotate:
            ax.bar_label(bars, labels=[f"{v:.3g}" for v in numbers], fontsize=7, padding=2)
    ax.set_xticks(range(len(labels)), [str(label) for label in labels],
                  rotation=45 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
    ax.margins(y=0.15)
    return _finish(figure, ax, path, title, ylabel, legend=len(series) > 1)


def plot_series(path, xs, ys, title, xlabel, ylabel, *, points=False):
    """Lines (or points) of y over x as PNG: one series, or several with a legend.

    Args:
      path: the PNG to write (atomically).
      xs: the x values shared by every series, or None for 0, 1, 2, ...
      ys: numbers (one series); or {series name: numbers}, all as long as xs.
      title, xlabel, ylabel: the texts.
      points: draw markers only (a scatter, e.g. accuracy over MACs) instead of lines.

    Returns:
      path.

    Raises:
      ValueError: a series is not as long as xs.

    Example:
      >>> rewards = [0.61, 0.70, 0.66, 0.74]
      >>> best = [0.61, 0.70, 0.70, 0.74]
      >>> path = os.path.join(tmp_dir, "reward.png")
      >>> plot_series(path, None, {"reward": rewards, "best": best}, "AMC search", "episode", "reward") == path
      True
    """
    if xs is None:
        xs = range(max(len(v) for v in (ys.values() if isinstance(ys, dict) else [ys])))
    xs = list(xs)
    series = _as_series(ys, len(xs), ("ys", "x values"))
    figure, ax = _figure(5.0, 3.4)
    for name, numbers in series.items():
        if points:
            ax.plot(xs, numbers, "o", markersize=4, label=name)
        else:
            ax.plot(xs, numbers, "-", marker="." if len(xs) <= 50 else None, label=name)
    if all(float(x).is_integer() for x in xs):  # episodes, steps: no ticks between them
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    return _finish(figure, ax, path, title, ylabel, legend=len(series) > 1)
