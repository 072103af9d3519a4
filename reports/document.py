"""A tiny document model rendered twice: Markdown (figures linked) and self-contained HTML
(figures embedded as base64 PNG), so the two reports never say different things."""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reports.plots import SavedFigure


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str
    style: str = ""  # "", "good", "bad", "note": a coloured box in HTML
    lines: tuple[str, ...] = ()  # more lines after `text`, each on its own line


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    align_right_from: int = 1  # columns from this index on are right-aligned (numbers)
    text_columns: tuple[int, ...] = ()  # left-aligned even past align_right_from


@dataclass(frozen=True)
class FigureBlock:
    figure: SavedFigure
    caption: str = ""


Block = Heading | Paragraph | Table | FigureBlock


def _is_number_column(table: Table, index: int) -> bool:
    return index >= table.align_right_from and index not in table.text_columns


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block], out_dir: Path) -> str:
    """Markdown with figures linked relative to `out_dir` (where report.md is written)."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            prefix = {"good": "✅ ", "bad": "⚠️ ", "note": "> "}.get(block.style, "")
            lines += ["  \n".join([prefix + block.text, *block.lines]), ""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
            aligns = [
                "---:" if _is_number_column(block, i) else "---" for i in range(len(block.header))
            ]
            lines.append("|" + "|".join(aligns) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            lines.append("")
        else:
            relative = Path(os.path.relpath(block.figure.png, out_dir)).as_posix()
            lines += [f"![{block.figure.title}]({relative})", ""]
            caption = f"*{block.caption}*" if block.caption else ""
            if block.figure.svg is not None:
                svg = Path(os.path.relpath(block.figure.svg, out_dir)).as_posix()
                caption += f" ([SVG]({svg}))"
            lines += [caption.strip(), ""]
    return "\n".join(lines).rstrip() + "\n"


_CODE_RE = re.compile(r"`([^`]+)`")
_BOLD_RE = re.compile(r"\*\*([^*]+)\*\*")
_ITALIC_RE = re.compile(r"(?<![*\w])\*([^*\s][^*]*)\*(?![*\w])")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #ddd;padding-bottom:.3em}
h2{margin-top:1.8em;border-bottom:1px solid #eee}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.box{padding:.8em 1em;border-radius:6px;margin:1em 0;font-size:1.05em}
.good{background:#e8f6ea;border:1px solid #7cc486}.bad{background:#fdecea;border:1px solid #e38b84}
.note{background:#eef3fb;border:1px solid #9db5de}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}code{background:#f5f5f5;padding:0 .2em}
"""


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = _CODE_RE.sub(r"<code>\1</code>", escaped)
    escaped = _BOLD_RE.sub(r"<strong>\1</strong>", escaped)
    return _ITALIC_RE.sub(r"<em>\1</em>", escaped)


def to_html(blocks: Sequence[Block], title: str) -> str:
    """One self-contained HTML page: styles inline, PNGs as data URIs."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            body.append(f"<h{level}>{_inline(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            text = "<br>".join(_inline(line) for line in (block.text, *block.lines))
            if block.style:
                body.append(f'<div class="box {block.style}">{text}</div>')
            else:
                body.append(f"<p>{text}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
            rows = []
            for row in block.rows:
                cells = "".join(
                    f'<td class="num">{_inline(c)}</td>'
                    if _is_number_column(block, i)
                    else f"<td>{_inline(c)}</td>"
                    for i, c in enumerate(row)
                )
                rows.append(f"<tr>{cells}</tr>")
            body.append(
                f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            )
        else:
            data = base64.b64encode(block.figure.png.read_bytes()).decode("ascii")
            caption = _inline(block.caption or block.figure.title)
            body.append(
                f'<figure><img alt="{html.escape(block.figure.title)}" '
                f'src="data:image/png;base64,{data}"><figcaption>{caption}</figcaption></figure>'
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_documents(blocks: Sequence[Block], out_dir: Path, title: str) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into `out_dir`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text(to_markdown(blocks, out_dir), "utf-8")
    html_path.write_text(to_html(blocks, title), "utf-8")
    return md_path, html_path
