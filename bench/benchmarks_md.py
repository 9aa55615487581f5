"""Replace one marked section of BENCHMARKS.md, leaving the others as they are."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfmc import io as tfmc_io  # noqa: E402

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "BENCHMARKS.md")
_HEADER = "# Benchmarks\n\nFigures measured on the development machine (2 CPU cores, no GPU). Each section names the command that produced it.\n"


def write_section(key, markdown, path=BENCHMARKS):
    """Put ``markdown`` between the ``key`` markers of ``path`` (appended when new), atomically."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else _HEADER
    block = f"{start}\n{markdown.strip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tfmc_io.write_text(path, text)
