"""Decision rules fixed before the run (issue 23 item 3): the study's settings file, its digest, and the
engine that turns per-seed results into the verdicts the write-up may state.

The settings file (``benchmarks/study/settings.json``) holds the study's settings, the seeds per kind of row
(``conclusion`` rows at least 5 seeds, the others at least 3), the interval level and resamples, and the
rules. A rule compares two models on a set of tracks; each verdict has its sentence, and the write-up says
only the sentence of the verdict reached::

    {"name": "...", "kind": "contrast", "first": "fresh-report@{short}", "second": "fresh-ours@{short}",
     "tracks": "long-range/band", "min_effect": 0.02, "margin": 0.01,
     "say": {"loss": "...", "gain": "...", "equivalent": "...", "inconclusive": "..."}}

Verdicts of a ``contrast`` (both intervals, the paired t over seeds and the two-level bootstrap, must agree):
``loss``/``gain`` when both exclude 0 on that side and the difference is at least ``min_effect``;
``equivalent`` when both lie inside ``[-margin, +margin]``; else ``inconclusive``.
An ``ordered`` rule lists contrasts (``pairs``: [first, second, tracks] each) and is ``ordered`` when each
contrast's per-seed values exceed the next one's (a paired t-interval of the seed-wise differences above 0
for every neighbouring pair), else ``not ordered``: e.g. the positions gap growing from the distance-agnostic
count to the hard band.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import UserError
from .statistics import contrast, paired_interval

CONTRAST_VERDICTS = ("loss", "gain", "equivalent", "inconclusive")
ORDERED_VERDICTS = ("ordered", "not ordered")
MIN_SEEDS = {"conclusion": 5, "other": 3}


def settings_digest(path: str | os.PathLike) -> str:
    """sha256 of the settings file's bytes: the run records it, and git history shows it came first."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_rules_file(path: str | os.PathLike) -> dict[str, Any]:
    """The settings file, checked: seeds per kind of row, level, resamples, and every rule's fields."""
    path = Path(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not a readable JSON settings file ({error})") from None
    problems = []
    seeds = values.get("seeds") if isinstance(values, dict) else None
    if not isinstance(seeds, dict) or set(seeds) != set(MIN_SEEDS):
        problems.append(f"seeds must be an object with {', '.join(MIN_SEEDS)}")
    else:
        for kind, least in MIN_SEEDS.items():
            if len(set(seeds[kind])) < least and not values.get("smoke", False):
                problems.append(f"seeds.{kind} has {len(set(seeds[kind]))} seeds; at least {least} (or \"smoke\": true)")
    if not 0 < float(values.get("level", 0.95) if isinstance(values, dict) else 0) < 1:
        problems.append("level must lie between 0 and 1")
    for index, rule in enumerate(values.get("rules", []) if isinstance(values, dict) else []):
        problems += [f"rules[{index}]: {problem}" for problem in _rule_problems(rule)]
    if problems:
        raise UserError(f"{path}: " + "; ".join(problems))
    return values


def settings_from_rules(values: Mapping[str, Any], source: str = "settings file"):
    """The :class:`.runs.StudySettings` a settings file fixes: its ``study`` fields, the conclusion seeds (the
    other rows run on the first ``len(other)`` of them, which must be those seeds) and the conclusion rows."""
    from .runs import StudySettings

    conclusion, other = [int(s) for s in values["seeds"]["conclusion"]], [int(s) for s in values["seeds"]["other"]]
    if conclusion[: len(other)] != other:
        raise UserError(f"{source}: seeds.other {other} must be the first seeds of seeds.conclusion {conclusion}")
    study = dict(values.get("study", {}))
    if "seeds" in study or "other_seeds" in study or "conclusion_rows" in study:
        raise UserError(f"{source}: the seeds and conclusion rows belong in seeds and conclusion_rows, not in study")
    return StudySettings.from_dict({**study, "seeds": conclusion, "other_seeds": len(other),
                                    "conclusion_rows": values.get("conclusion_rows", [])}, source=source)


def _rule_problems(rule: Mapping[str, Any]) -> list[str]:
    kind = rule.get("kind")
    if kind == "contrast":
        missing = [key for key in ("name", "first", "second", "tracks", "min_effect", "margin", "say") if key not in rule]
        verdicts = CONTRAST_VERDICTS
    elif kind == "ordered":
        missing = [key for key in ("name", "pairs", "say") if key not in rule]
        verdicts = ORDERED_VERDICTS
    else:
        return [f"kind {kind!r} must be contrast or ordered"]
    if missing:
        return [f"lacks {', '.join(missing)}"]
    absent = [verdict for verdict in verdicts if verdict not in rule["say"]]
    return [f"say lacks a sentence for {', '.join(absent)}"] if absent else []


def contrast_verdict(paired: Mapping[str, Any], bootstrap: Mapping[str, Any], min_effect: float, margin: float) -> str:
    """The verdict of one contrast from its two intervals (see the module)."""
    intervals = [paired, bootstrap]
    if any(interval.get("low") is None or interval.get("high") is None for interval in intervals):
        return "inconclusive"  # one seed: no interval over seeds
    difference = paired["difference"]
    if all(interval["high"] < 0 for interval in intervals) and difference <= -min_effect:
        return "loss"
    if all(interval["low"] > 0 for interval in intervals) and difference >= min_effect:
        return "gain"
    if all(-margin <= interval["low"] and interval["high"] <= margin for interval in intervals):
        return "equivalent"
    return "inconclusive"


def ordered_verdict(per_seed_contrasts: Sequence[Mapping[str, float]], level: float = 0.95) -> tuple[str, list[dict]]:
    """``ordered`` when each contrast's per-seed values (seed -> value) exceed the next one's, by a paired
    t-interval above 0 on the seeds both have; with the intervals of every neighbouring pair."""
    steps = []
    for earlier, later in zip(per_seed_contrasts, per_seed_contrasts[1:]):
        seeds = sorted(set(earlier) & set(later))
        steps.append(paired_interval([earlier[s] for s in seeds], [later[s] for s in seeds], level))
    shown = bool(steps) and all(step["low"] is not None and step["low"] > 0 for step in steps)
    return ("ordered" if shown else "not ordered"), steps


def decide(rules: Mapping[str, Any], per_seed: Mapping[int, Mapping[str, Any]], track_sets: Mapping[str, Sequence[int] | None],
           names: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every rule's verdict, its numbers and the one sentence it allows.

    Args:
        rules: the settings file (:func:`read_rules_file`). per_seed: :func:`.statistics.read_per_seed`.
        track_sets: ``"all"``, ``"long-range"``, ``"long-range/<signal>"``... -> track indices (None: all).
        names: values for the ``{...}`` fields of model names (``short``, ``long``, ``full``).
    """
    level, resamples = float(rules.get("level", 0.95)), int(rules.get("resamples", 2000))

    def measured(first: str, second: str, tracks: str) -> dict[str, Any]:
        if tracks not in track_sets:
            raise UserError(f"a rule names tracks {tracks!r}; this study has {', '.join(track_sets)}")
        return {"tracks": tracks, **contrast(per_seed, first.format(**names), second.format(**names),
                                             track_sets[tracks], resamples, level)}

    decisions = []
    for rule in rules.get("rules", []):
        if rule["kind"] == "contrast":
            numbers = measured(rule["first"], rule["second"], rule["tracks"])
            verdict = contrast_verdict(numbers["paired"], numbers["bootstrap"], float(rule["min_effect"]),
                                       float(rule["margin"]))
            decisions.append({"name": rule["name"], "kind": "contrast", "verdict": verdict, "numbers": numbers,
                              "statement": rule["say"][verdict].format(**_fields(numbers))})
        else:
            parts = [measured(*pair) for pair in rule["pairs"]]
            verdict, steps = ordered_verdict([{int(s): v for s, v in part["per_seed"].items()} for part in parts], level)
            decisions.append({"name": rule["name"], "kind": "ordered", "verdict": verdict,
                              "numbers": {"contrasts": parts, "steps": steps},
                              "statement": rule["say"][verdict].format(
                                  differences=", ".join(f"{p['tracks']} {p['paired']['difference']:+.3f}" for p in parts))})
    return decisions


def _fields(numbers: Mapping[str, Any]) -> dict[str, str]:
    """The fields a contrast's sentence may use: the difference and both intervals, formatted."""
    def interval(values: Mapping[str, Any]) -> str:
        if values.get("low") is None:
            return "[no interval: one seed]"
        return f"[{values['low']:+.3f}, {values['high']:+.3f}]"

    return {"difference": f"{numbers['paired']['difference']:+.3f}", "paired": interval(numbers["paired"]),
            "bootstrap": interval(numbers["bootstrap"]), "seeds": str(len(numbers["seeds"]))}
