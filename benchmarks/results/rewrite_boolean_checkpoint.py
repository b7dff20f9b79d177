"""One-off: rewrite the three scaling results recorded with a boolean ``checkpoint`` to the named scopes.

Before the "conv" scope existed, a point's activation checkpointing was a bool: True meant what is now
"all" (the transformer and the conv tower), False "off". This rewrites that one field, and the point keys
built from it, in scaling.json, settings.json, scaling.csv and scaling.md; every recorded number and every
other byte stays as it is. Run once from the repository root; a second run finds nothing to change.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent
FOLDERS = ("scaling_full_commit_1171758", "scaling_inference_quick", "scaling_quick")
SCOPE = {True: "all", False: "off"}


def scope(value):
    return SCOPE[value] if isinstance(value, bool) else value


def rewrite_document(node):
    """Every ``checkpoint`` bool, ``checkpoints`` list of bools and point key, anywhere in the document."""
    if isinstance(node, list):
        return [rewrite_document(item) for item in node]
    if not isinstance(node, dict):
        return node
    rewritten = {}
    for name, value in node.items():
        if name == "checkpoint":
            value = scope(value)
        elif name == "checkpoints" and isinstance(value, list):
            value = [scope(item) for item in value]
        elif name == "key" and isinstance(value, str):
            value = value.replace("|checkpoint=True|", "|checkpoint=all|").replace("|checkpoint=False|", "|checkpoint=off|")
        else:
            value = rewrite_document(value)
        rewritten[name] = value
    return rewritten


def rewrite_csv(text: str) -> str:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    column = rows[0].index("checkpoint")
    for row in rows[1:]:
        row[column] = {"True": "all", "False": "off"}.get(row[column], row[column])
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)  # the default dialect, as csv.DictWriter wrote it
    return buffer.getvalue()


def rewrite_markdown(text: str) -> str:
    """The tables' ``ckpt`` column said "on" for True; the scope is "all"."""
    lines, column = text.split("\n"), None
    for index, line in enumerate(lines):
        if not line.startswith("|"):
            column = None
            continue
        cells = line.split(" | ")
        if "ckpt" in cells:
            column = cells.index("ckpt")
        elif column is not None and len(cells) > column and cells[column] == "on":
            cells[column] = "all"
            lines[index] = " | ".join(cells)
    return "\n".join(lines)


def main() -> None:
    for folder in FOLDERS:
        directory = RESULTS / folder
        document = json.loads((directory / "scaling.json").read_text(encoding="utf-8"))
        (directory / "scaling.json").write_text(json.dumps(rewrite_document(document), indent=1) + "\n", encoding="utf-8")
        settings = json.loads((directory / "settings.json").read_text(encoding="utf-8"))
        (directory / "settings.json").write_text(json.dumps(rewrite_document(settings), indent=2) + "\n", encoding="utf-8")
        table = (directory / "scaling.csv").read_text(encoding="utf-8")
        (directory / "scaling.csv").write_text(rewrite_csv(table), encoding="utf-8", newline="")
        report = (directory / "scaling.md").read_text(encoding="utf-8")
        (directory / "scaling.md").write_text(rewrite_markdown(report), encoding="utf-8")
        print(f"rewrote {directory}")


if __name__ == "__main__":
    main()
