"""mkdocs hook: the recorded figures live in benchmarks/results/ (beside the data they plot), and the pages
link them as ``../benchmarks/results/...`` so that they also render on a code host. The site copies them to
``assets/results/`` and the links follow."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
PREFIX = "../benchmarks/results/"
SITE_FOLDER = "assets/results"


def on_files(files: Files, config) -> Files:
    for path in sorted(RESULTS.rglob("*.png")):
        relative = path.relative_to(RESULTS).as_posix()
        files.append(File.generated(config, f"{SITE_FOLDER}/{relative}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    depth = page.file.src_uri.count("/")
    return markdown.replace(f"]({PREFIX}", f"]({'../' * depth}{SITE_FOLDER}/")
