"""Docker's table alignment, shared by ``--format table ...`` and ``ps``'s default table
(which prints without importing the template evaluator)."""

from __future__ import annotations


def aligned(lines: list[str]) -> str:
    """Tab-separated lines as Docker's tabwriter aligns them: a column is its widest cell
    plus three spaces, and at least ten wide."""
    rows = [line.split("\t") for line in lines]
    if len({len(row) for row in rows}) == 1:  # as many cells in every row (a ps table)
        pads = [max(max(map(len, column)) + 3, 10) for column in list(zip(*rows, strict=True))[:-1]]
        pads.append(0)  # the last cell as it is
        return "\n".join("".join(map(str.ljust, row, pads)) for row in rows)
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell))
    return "\n".join(
        "".join(cell.ljust(max(widths[i] + 3, 10)) for i, cell in enumerate(row[:-1])) + row[-1]
        for row in rows
    )
