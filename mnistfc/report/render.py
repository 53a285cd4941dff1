"""A report as a list of blocks, rendered twice: Markdown with image links, and one HTML file
with the PNGs embedded so it opens offline anywhere."""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from mnistfc.atomic import atomic_write_text


@dataclass
class Report:
    """The blocks of a report and the files written for it."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def add(self, kind: str, content: Any) -> None:
        """Append a block: h2, p, table (headers, rows), img (path, caption), pre."""
        self.blocks.append((kind, content))

    def add_table(self, label: str, headers: list[str], rows: list[list[str]], fmt: str) -> None:
        """Append a table block, and the same table to the console text under ``label``."""
        self.add("table", (headers, rows))
        self.text.append(
            f"{label}:\n" + tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
        )


def render(report: Report, out: Path) -> list[Path]:
    """Write ``report.md`` and a self-contained ``report.html`` (PNGs embedded) under ``out``."""
    md, body = [f"# {report.title}", ""], []
    for kind, content in report.blocks:
        if kind == "h2":
            md += [f"## {content}", ""]
            body.append(f"<h2>{html.escape(content)}</h2>")
        elif kind == "p":
            md += [content, ""]
            body.append(f"<p>{html.escape(content).replace('**', '')}</p>")
        elif kind == "pre":
            md += ["```", content, "```", ""]
            body.append(f"<pre>{html.escape(content)}</pre>")
        elif kind == "table":
            headers, rows = content
            md += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
            body.append(tabulate(rows, headers=headers, tablefmt="html", disable_numparse=True))
        elif kind == "img":
            path, caption = content
            md += [f"![{caption}]({os.path.relpath(path, out)})", ""]
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            alt = html.escape(caption)
            body.append(
                f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
                f"<figcaption>{alt}</figcaption></figure>"
            )
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, "\n".join(md))
    atomic_write_text(
        html_path, _HTML.format(title=html.escape(report.title), body="\n".join(body))
    )
    return [md_path, html_path]


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }}
pre {{ background: #f6f6f6; padding: 0.5rem; overflow-x: auto; }}
img {{ max-width: 100%; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""


def cell(value: Any) -> str:
    """Format one table cell: 4 decimals, small numbers (learning rates) in e-notation."""
    if isinstance(value, float | np.floating):
        number = float(value)
        if np.isnan(number):
            return ""
        if 0 < abs(number) < 1e-3:  # a learning rate of 1e-05 is not 0.0000
            return f"{number:.0e}"
        return f"{number:.4f}" if abs(number) < 100 else f"{number:.0f}"
    return str(value)


SPLIT_LABELS = {"train": "Train", "valid": "Validation", "test": "Test"}


def performance_table(metrics: dict[str, dict[str, float]], table_format: str = "orgtbl") -> str:
    """Render the exercise's table: rows Train / Validation / Test; Loss, Accuracy, Error rate."""
    rows = [
        [label, metrics[split]["loss"], metrics[split]["accuracy"], metrics[split]["error_pct"]]
        for split, label in SPLIT_LABELS.items()
    ]
    return tabulate(
        rows,
        headers=["", "Loss", "Accuracy", "Error rate [%]"],
        tablefmt=table_format,
        floatfmt=".4f",
    )
