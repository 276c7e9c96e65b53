"""Every code block of README.md and docs/ runs, and every generated table renders.

The rules (docs/development.md, "Writing docs"): a ```python block runs alone, in a fresh
namespace, in a temporary working directory, with the registries, Keras' custom objects and
Keras' dtype policy restored afterwards. `<!-- skip: REASON -->` on the line above a fence
skips that block; shell blocks are never run and must carry that marker. A block that trains
says so in the paragraph above it ("Small sizes ..."). The blocks live in this one file so
that pytest-xdist's `--dist loadfile` gives them to one worker while the other runs the rest.
"""

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
SKIP = re.compile(r"^\s*<!-- skip: (.+?) -->\s*$")
SHELL = {"bash", "sh", "shell", "console"}
TRAINS = re.compile(r"\.fit\(|fit_surrogate_posterior|\.minimize\(|GradientTape")


@dataclass
class Block:
    page: str          # README.md, or the path under docs/
    line: int          # the opening fence's line, from 1
    language: str
    code: str
    skip: str | None   # the reason given by a skip marker
    paragraph: str     # the text right above the block (up to a blank line)


def _page_name(path: Path) -> str:
    return str(path.relative_to(DOCS)) if path.is_relative_to(DOCS) else path.name


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of the Markdown page at `path`."""
    lines, found, i = path.read_text().splitlines(), [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, language = opening.groups()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        code = "\n".join(line[len(indent):] for line in lines[i + 1:end])
        above = i - 1
        skip = SKIP.match(lines[above]) if above >= 0 else None
        if skip:
            above -= 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        paragraph = []
        while above >= 0 and lines[above].strip() and not FENCE.match(lines[above]):
            paragraph.insert(0, lines[above])
            above -= 1
        found.append(Block(_page_name(path), i + 1, language, code + "\n",
                           skip and skip.group(1), "\n".join(paragraph)))
        i = end + 1
    return found


BLOCKS = [block for page in PAGES for block in blocks(page)
          if block.language == "python" or block.language in SHELL]


@pytest.fixture
def restored_state(tmp_path, monkeypatch):
    """A temporary working directory; registries, custom objects and dtype policy restored."""
    import keras

    from tfp_flows.bases import BASES
    from tfp_flows.datasets.source import SOURCES
    from tfp_flows.families.base import FAMILIES
    from tfp_flows.transforms.base import TRANSFORMS

    monkeypatch.chdir(tmp_path)
    registries = [(registry, dict(registry._entries))
                  for registry in (BASES, SOURCES, FAMILIES, TRANSFORMS)]
    custom_objects = dict(keras.saving.get_custom_objects())
    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    modules, path = set(sys.modules), list(sys.path)
    yield
    for registry, entries in registries:
        registry._entries.clear()
        registry._entries.update(entries)
    keras.saving.get_custom_objects().clear()
    keras.saving.get_custom_objects().update(custom_objects)
    keras.config.set_dtype_policy(policy)
    keras.config.set_floatx(floatx)
    sys.path[:] = path
    for name in set(sys.modules) - modules:  # a plugin module a block imported: afresh next time
        origin = getattr(sys.modules[name], "__file__", None) or ""
        if origin.startswith((str(ROOT / "examples"), str(tmp_path))):
            del sys.modules[name]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.page}:{b.line}" for b in BLOCKS])
def test_block_runs(block, restored_state):
    if block.language in SHELL:
        assert block.skip, (f"{block.page}:{block.line}: a shell block is not run; say why with "
                            "<!-- skip: REASON --> on the line above it")
    if block.skip:
        pytest.skip(block.skip)
    if TRAINS.search(block.code):
        assert "Small sizes" in block.paragraph, (
            f"{block.page}:{block.line} trains: the paragraph above it must say so "
            "(\"Small sizes: ...\")")
    exec(compile(block.code, f"{block.page}:{block.line}", "exec"), {"__name__": "__main__"})


def test_a_block_skipped_as_the_readme_quick_start_is_that_block():
    quick_start = next(b for b in blocks(ROOT / "README.md") if b.language == "python")
    copies = [b for b in BLOCKS if b.skip and b.skip.startswith("the README's quick start")]
    assert copies and all(b.code == quick_start.code for b in copies)


def test_the_parser_finds_skips_indented_blocks_and_paragraphs(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("Intro.\n\n*Small sizes: one step.*\n\n<!-- skip: shell -->\n```bash\nls\n"
                    "```\n\n- item\n\n  ```python\n  x = 1\n  ```\n")
    shell, python = blocks(page)
    assert (shell.language, shell.skip, shell.code, shell.paragraph) == (
        "bash", "shell", "ls\n", "*Small sizes: one step.*")
    assert (python.language, python.skip, python.code, python.line) == (
        "python", None, "x = 1\n", 12)


def _doctables():
    sys.path.insert(0, str(DOCS))
    import doctables

    return doctables


@pytest.mark.parametrize("page", sorted(DOCS.rglob("*.md")), ids=_page_name)
def test_tables_render(page):
    doctables = _doctables()
    for name in doctables.markers(page.read_text()):
        table = doctables.render(name)
        assert table.startswith("| ") and "\nSource: `" in table, name


def test_every_table_module_is_used():
    doctables = _doctables()
    used = {name for page in DOCS.rglob("*.md") for name in doctables.markers(page.read_text())}
    modules = {path.stem for path in (DOCS / "doctables").glob("*.py")} - {"__init__"}
    assert modules == used
