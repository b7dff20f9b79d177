"""Only the inference module, the training step, gradient x input and the benchmarks call a model's forward.

Everything else runs models through ``senformer.inference`` so averaging, precision, devices and batching
mean the same everywhere (issue 12). A call of a model is recognised by its callee: a variable that holds a
model by the project's naming (``model``, ``models[...]``, ``teacher``, ``student``, ``network``, ``net``,
``enformer``, also as ``self.<name>``), a part of the forward on such a variable (``model.conv_features``,
``head_outputs``, ``embed``, ``trunk``), or any ``.forward(...)`` except a layer's ``super().forward(...)``.
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "senformer"

MODEL_NAMES = {"model", "teacher", "student", "network", "net", "enformer"}
PARTS_OF_FORWARD = {"conv_features", "head_outputs", "embed", "trunk"}  # model.<part>(x) runs part of it
MODEL_COLLECTIONS = {"models"}

ALLOWED_FILES = {
    "inference.py": "the one inference path",
    "edits.py": "the edit engine: the reference trunk once, then only what an edit can change",
    "train/loop.py": "the training step (needs gradients)",
    "analysis/attribution.py": "gradient x input (needs gradients)",
}
ALLOWED_FOLDERS = {"bench/": "benchmarks time the forward itself"}


def model_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, callee) of every call of a model's forward in ``tree``, by the rule in the module docstring."""
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        callee = node.func
        if isinstance(callee, ast.Name):
            matched = callee.id in MODEL_NAMES
        elif isinstance(callee, ast.Subscript):
            matched = isinstance(callee.value, ast.Name) and callee.value.id in MODEL_COLLECTIONS
        elif isinstance(callee, ast.Attribute) and callee.attr in PARTS_OF_FORWARD:
            value = callee.value
            matched = (isinstance(value, ast.Name) and value.id in MODEL_NAMES) or (
                isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name) and value.value.id == "self"
                and value.attr in MODEL_NAMES)
        elif isinstance(callee, ast.Attribute) and callee.attr == "forward":
            value = callee.value
            matched = not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super")
        elif isinstance(callee, ast.Attribute):
            matched = (isinstance(callee.value, ast.Name) and callee.value.id == "self"
                       and callee.attr in MODEL_NAMES)
        else:
            matched = False
        if matched:
            calls.append((node.lineno, ast.unparse(callee)))
    return calls


def _allowed(relative: str) -> bool:
    return relative in ALLOWED_FILES or relative.startswith(tuple(ALLOWED_FOLDERS))


def test_the_rule_recognises_each_way_of_calling_a_model():
    source = """
model(x, heads=["human"])
models[name](x)
self.model(x)
self.network(x)
teacher(x)
student(x)
wrapped.forward(x)
model.conv_features(x)
self.model.head_outputs(features)
super().forward(x)
load_model(path)
model.eval()
predict_batch(model, x)
"""
    callees = [callee for _, callee in model_calls(ast.parse(source))]
    assert callees == ["model", "models[name]", "self.model", "self.network", "teacher", "student", "wrapped.forward",
                       "model.conv_features", "self.model.head_outputs"]


def test_only_the_allowed_modules_call_a_models_forward():
    found: dict[str, list[tuple[int, str]]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        calls = model_calls(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        if calls:
            found[path.relative_to(SOURCE).as_posix()] = calls
    outside = {file: calls for file, calls in found.items() if not _allowed(file)}
    assert not outside, (
        "these modules call a model's forward; run it through senformer.inference.predict_batch instead: "
        + "; ".join(f"{file} lines {', '.join(str(line) for line, _ in calls)}" for file, calls in outside.items())
    )
    # The rule is not vacuous: it sees the calls the allow-list is for.
    assert {"inference.py", "train/loop.py", "analysis/attribution.py"} <= set(found)
