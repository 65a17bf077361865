"""The benchmarks' plain-text tables: aligned columns under a header and a rule."""

from __future__ import annotations


def table(headers: list[str], rows: list[list], right: set[int] | None = None) -> str:
    """Aligned columns; columns in ``right`` (default: those whose cells are all numbers) right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    if right is None:
        right = {
            i
            for i in range(len(headers))
            if rows and all(isinstance(r[i], (int, float)) or r[i] is None for r in rows)
        }
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return (
            f"{value:.4g}"
            if abs(value) < 1e-3 and value
            else f"{value:,.3f}"
            if abs(value) < 100
            else f"{value:,.1f}"
        )
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
