"""The run report: exact Markdown, and the HTML as real headless Chromium renders it (no network)."""
import base64
import html.parser
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from tfmc import report

ROWS = [
    {"model": "original", "accuracy": 0.975, "macs": 1_234_567, "params": 56_789, "tflite_bytes": 250_000,
     "latency_ms": 1.234},
    {"model": "pruned", "accuracy": 0.9683, "macs": 617_000, "params": 30_000, "tflite_bytes": 130_000,
     "latency_ms": 0.8},
    {"model": "pruned+quantized", "accuracy": 0.9661, "macs": 617_000, "params": 30_000, "bops": 9_872_000,
     "tflite_bytes": 40_000},
]
# Matplotlib's first colour (#1f77b4): the bars and lines of both figures are drawn in it.
FIRST_COLOUR = np.array([31, 119, 180])


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _headless(chromium, profile, *args):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]
    done = subprocess.run([chromium, *flags, *args], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _DomReader(html.parser.HTMLParser):
    """Collects the table's rows of cell texts, the images' sources and every href/src."""

    def __init__(self):
        super().__init__()
        self.rows, self.images, self.links, self._cell = [], [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = ""
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        self.links += [attrs[k] for k in ("href", "src") if k in attrs]

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    bars = report.plot_bars(str(out / "accuracy.png"), [r["model"] for r in ROWS], [r["accuracy"] for r in ROWS],
                            "Accuracy", "top-1")
    series = report.plot_series(str(out / "figures" / "reward.png"), None,
                                {"reward": [0.1, 0.4, 0.3, 0.6], "best": [0.1, 0.4, 0.4, 0.6]},
                                "Search", "episode", "reward")
    results = {
        "title": "digits CNN <compressed>",
        "dataset": "digits (1257 / 270 / 270)",
        "rows": ROWS,
        "figures": [{"title": "Accuracy per model", "path": bars}, {"title": "Reward per episode", "path": series}],
        "notes": ["accuracy drops < 1 point"],
        "commands": ["tfmc demo --quick --out run"],
    }
    md_path, html_path = report.write_report(str(out), results)
    return out, md_path, html_path, (bars, series)


def test_plots_are_pngs_and_written_atomically(written):
    out, _, _, figures = written
    for path in figures:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 200
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # no temporaries left behind


def test_markdown_report_holds_the_exact_table_and_sections(written):
    _, md_path, _, _ = written
    text = open(md_path, encoding="utf-8").read()
    lines = text.splitlines()
    assert lines[0] == "# digits CNN <compressed>"
    assert "| model | accuracy | MACs | params | BOPs | .tflite size | latency (ms) |" in lines
    assert "| original | 97.50% | 1.23 M | 56.8 k | – | 244 KiB | 1.23 |" in lines
    assert "| pruned | 96.83% | 617 k (0.5×) | 30 k (0.53×) | – | 127 KiB (0.52×) | 0.8 (0.65×) |" in lines
    assert "| pruned+quantized | 96.61% | 617 k (0.5×) | 30 k (0.53×) | 9.87 M | 39.1 KiB (0.16×) | – |" in lines
    assert "![Accuracy per model](accuracy.png)" in lines
    assert "![Reward per episode](figures/reward.png)" in lines
    assert text.endswith("## Reproduce\n\n```sh\ntfmc demo --quick --out run\n```\n")


def test_html_in_headless_chromium_shows_the_table_and_embedded_images(written, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium on PATH; install it with: apt-get update && apt-get install -y chromium")
    _, _, html_path, figures = written
    url = "file://" + os.path.abspath(html_path)
    dom = _headless(chromium, tmp_path / "profile1", "--dump-dom", url)
    reader = _DomReader()
    reader.feed(dom)
    assert reader.rows[0] == ["model", "accuracy", "MACs", "params", "BOPs", ".tflite size", "latency (ms)"]
    assert reader.rows[2] == ["pruned", "96.83%", "617 k (0.5×)", "30 k (0.53×)", "–", "127 KiB (0.52×)", "0.8 (0.65×)"]
    assert len(reader.rows) == 4
    assert "<title>digits CNN &lt;compressed&gt;</title>" in dom
    assert "<li>accuracy drops &lt; 1 point</li>" in dom
    # Both images are the PNG files themselves, inline; nothing points outside the page.
    assert len(reader.images) == 2
    for src, path in zip(reader.images, figures):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == open(path, "rb").read()
    assert all(link.startswith("data:") for link in reader.links)
    # And the browser really draws them: the screenshot has the plots' blue.
    shot = tmp_path / "page.png"
    _headless(chromium, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1000,1600", url)
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    blue = np.sum(np.abs(pixels - FIRST_COLOUR).sum(axis=1) < 30)
    assert blue > 2000, f"only {blue} pixels of the plots' blue in the screenshot"


def test_results_that_break_the_schema_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown keys \['acc'\] in results\['rows'\]\[1\]; expected some of model, accuracy"):
        report.write_report(str(tmp_path), {"rows": [{"model": "a"}, {"model": "b", "acc": 0.5}]})
    with pytest.raises(ValueError, match=r"results\['rows'\] must be a non-empty list"):
        report.write_report(str(tmp_path), {"title": "x", "rows": []})
    with pytest.raises(ValueError, match=r"figure '.*missing\.png' does not exist"):
        report.write_report(str(tmp_path), {"rows": [{"model": "a"}], "figures": [{"title": "t", "path": str(tmp_path / "missing.png")}]})
    (tmp_path / "fake.png").write_text("not a picture")
    with pytest.raises(ValueError, match=r"figure '.*fake\.png' is not a PNG file"):
        report.write_report(str(tmp_path), {"rows": [{"model": "a"}], "figures": [{"title": "t", "path": str(tmp_path / "fake.png")}]})
    assert not os.path.exists(tmp_path / "report.md")


def test_missing_values_render_as_a_dash_and_plots_check_lengths(tmp_path):
    md_path, _ = report.write_report(str(tmp_path), {"rows": [{"model": "only", "macs": None}]})
    assert "| only | – | – | – | – | – | – |" in open(md_path, encoding="utf-8").read().splitlines()
    with pytest.raises(ValueError, match=r"series 'weights' has 2 values for 3 labels"):
        report.plot_bars(str(tmp_path / "b.png"), ["a", "b", "c"], {"weights": [8, 4], "activations": [8, 8, 4]}, "t", "bits")
    with pytest.raises(ValueError, match=r"series 'ys' has 3 values for 2 x values"):
        report.plot_series(str(tmp_path / "s.png"), [1, 2], [1, 2, 3], "t", "x", "y")
