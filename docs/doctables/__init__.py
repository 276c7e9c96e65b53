"""Tables of the documentation, rendered from the committed result JSONs.

A page holds a marker line `<!-- table: NAME -->`; `expand` replaces it with the Markdown that
`NAME.table()` returns, the module `docs/doctables/NAME.py`. Each module names the JSONs it reads
in `SOURCES` (paths from the repository root) and builds its rows with `load` and
`markdown_table`, which ends the table with a line naming those JSONs. The docs tests render
every marker of every page, so a table whose JSON lost a key fails there, not on the site.
"""

import importlib
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
MARKER = re.compile(r"^<!-- table: ([a-z0-9_]+) -->$", re.M)


def load(path: str):
    """The JSON document at `path`, relative to the repository root."""
    return json.loads((ROOT / path).read_text())


def markdown_table(header, rows, sources) -> str:
    """A Markdown table with `header` and `rows` (sequences of cells), then its sources."""
    missing = [source for source in sources if not (ROOT / source).is_file()]
    if missing:
        raise FileNotFoundError(f"a table's sources are not in the repository: {missing}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells under {len(header)} columns: {row}")
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    named = ", ".join(f"`{source}`" for source in sources)
    return "\n".join(lines) + f"\n\nSource: {named}.\n"


def written_tables(text: str) -> list[list[str]]:
    """The Markdown tables (as lists of lines) in `text`, a table a result's own command wrote
    into its JSON."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def written_cells(path: str, key: str, index: int = 0) -> tuple[list[str], list[list[str]]]:
    """The header and rows (lists of cell texts) of table `index` of the Markdown that the
    command writing `path` stored under `key` (a dotted path)."""
    value = load(path)
    for part in key.split("."):
        value = value[part]
    lines = written_tables(value if isinstance(value, str) else "\n".join(value))[index]
    cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    return cells[0], cells[2:]


def written_table(path: str, key: str, index: int = 0) -> str:
    """`written_cells(path, key, index)` as a table, with its source line."""
    return markdown_table(*written_cells(path, key, index), [path])


def render(name: str) -> str:
    """The Markdown of the table `name` (the module `doctables.name`)."""
    return importlib.import_module(f"doctables.{name}").table()


def expand(markdown: str) -> str:
    """`markdown` with every table marker replaced by its table."""
    return MARKER.sub(lambda match: render(match.group(1)), markdown)


def markers(markdown: str) -> list[str]:
    """The names of the tables `markdown` asks for."""
    return MARKER.findall(markdown)
