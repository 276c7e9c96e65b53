"""MkDocs hook: generated tables and the committed result figures.

A line `<!-- table: NAME -->` in a page is replaced by the table that `docs/doctables/NAME.py`
renders from committed result JSONs (see `doctables`), and the PNG figures committed under
`experiments/results/` and `benchmarks/results/` are published at the same paths relative to
the site root, so a page shows one with `![...](../experiments/results/x.png)` from
`docs/guides/` without a copy under docs/.
"""

import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))

import doctables  # noqa: E402

FIGURE_DIRECTORIES = ("experiments/results", "benchmarks/results")


def on_files(files, config):
    for directory in FIGURE_DIRECTORIES:
        for path in sorted((ROOT / directory).glob("*.png")):
            files.append(File(str(path.relative_to(ROOT)), src_dir=str(ROOT),
                              dest_dir=config["site_dir"],
                              use_directory_urls=config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    return doctables.expand(markdown)
