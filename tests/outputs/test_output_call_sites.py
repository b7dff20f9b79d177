"""Locking, partial outputs, the final rename and run records live only in ``senformer.outputs``.

Every other module reaches them through :class:`senformer.outputs.Output` (or ``move_into_place`` for things
that are not results: a verified download, a copied snapshot). The rule reads every module's syntax tree:

- ``fcntl`` (file locks) is imported nowhere else;
- nothing else calls ``os.replace``/``os.rename`` or a path's one-argument ``.rename(x)``/``.replace(x)``
  (``io.py``'s atomic writers are the one exception: a temporary file renamed onto its name);
- nothing else names the protocol's primitives: the run record's builder, writer and reader, the rule's
  steps, the lock helpers and the record's file name (``Output``'s own methods are the way in).
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src" / "senformer"

PRIMITIVES = {
    "run_record", "write_record", "read_record", "record_path", "partial_path", "plan_output", "start_partial",
    "finish_output", "drop_empty_partial", "output_lock", "lock_path", "hold", "flock", "RUN_RECORD",
    "recorded_fingerprint", "OutputPlan", "ShardedOutput",
}
MODULES = {"io", "rule", "locks", "record", "outputs", "fcntl", "shards", "senformer"}
RENAMES_ALLOWED = {"io.py": "the atomic writers: a temporary file beside its name, renamed when complete"}


def violations(tree: ast.AST, relative: str) -> list[tuple[int, str]]:
    """(line, what) of every use of a lock, partial, rename or run-record primitive in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names]
            module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            if "fcntl" in names or module == "fcntl":
                found.append((node.lineno, "import fcntl"))
            found += [(node.lineno, f"import {name}") for name in names if name in PRIMITIVES]
            if module.endswith(("outputs.rule", "outputs.locks", "outputs.shards")) or module in ("rule", "locks"):
                found.append((node.lineno, f"from {module} import ..."))
        elif isinstance(node, ast.Name) and node.id in PRIMITIVES:
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute) and node.attr in PRIMITIVES and isinstance(node.value, ast.Name) \
                and node.value.id in MODULES:
            found.append((node.lineno, ast.unparse(node)))  # io.output_lock(...), rule.finish_output(...)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and relative not in RENAMES_ALLOWED:
            callee = node.func
            if isinstance(callee.value, ast.Name) and callee.value.id == "os" and callee.attr in ("replace", "rename"):
                found.append((node.lineno, ast.unparse(callee)))
            elif callee.attr in ("rename", "replace") and len(node.args) == 1 and not node.keywords \
                    and not isinstance(callee.value, ast.Constant):
                found.append((node.lineno, ast.unparse(callee)))  # Path.rename(target) / Path.replace(target)
    return found


def test_the_rule_recognises_each_primitive():
    source = """
import fcntl
from senformer.outputs.rule import finish_output
os.replace(a, b)
os.rename(a, b)
partial.rename(target)
path.replace(target)
record = run_record("x", {})
with output_lock(out):
    pass
text.replace("a", "b")
table.rename(columns={"a": "b"})
Output(out).finish()
fcntl.flock(descriptor, fcntl.LOCK_EX)
reader.read_record()
"""
    found = [what for _, what in sorted(violations(ast.parse(source), "commands/x.py"))]
    assert found == ["import fcntl", "from senformer.outputs.rule import ...", "import finish_output", "os.replace",
                     "os.rename", "partial.rename", "path.replace", "run_record", "output_lock", "fcntl.flock"]


def test_no_module_outside_the_output_package_locks_renames_or_writes_run_records():
    offenders = []
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE).as_posix()
        if relative.startswith("outputs/") or relative == "record.py":  # record.py builds the record's fields
            continue
        offenders += [f"{relative}:{line}: {what}" for line, what in violations(ast.parse(path.read_text()), relative)]
    assert not offenders, "use senformer.outputs.Output instead:\n" + "\n".join(offenders)
