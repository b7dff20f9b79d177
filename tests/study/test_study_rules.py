"""The decision rules fixed before the run: the settings file is checked, its digest recorded, and the
verdicts follow the intervals, flipping when the per-seed results are altered to flip them."""

import json
from pathlib import Path

import numpy as np
import pytest

from senformer.errors import UserError
from senformer.study.rules import contrast_verdict, decide, ordered_verdict, read_rules_file, settings_digest
from senformer.study.statistics import record_sums

SETTINGS = Path(__file__).resolve().parents[2] / "benchmarks" / "study" / "settings.json"
SAY = {"loss": "loses {difference} {paired} {bootstrap}", "gain": "gains {difference}",
       "equivalent": "equivalent {paired}", "inconclusive": "inconclusive {difference}"}


def _interval(low, high, difference=None):
    return {"low": low, "high": high, "difference": (low + high) / 2 if difference is None else difference}


def test_contrast_verdicts_need_both_intervals_and_the_effect_size():
    assert contrast_verdict(_interval(-0.08, -0.04), _interval(-0.09, -0.03), 0.02, 0.01) == "loss"
    # The record-only view alone would say "loss"; the interval with seed variance crosses 0.
    assert contrast_verdict(_interval(-0.015, 0.063), _interval(0.013, 0.035), 0.02, 0.01) == "inconclusive"
    assert contrast_verdict(_interval(-0.02, -0.005), _interval(-0.02, -0.004), 0.02, 0.01) == "inconclusive"
    assert contrast_verdict(_interval(0.03, 0.05), _interval(0.031, 0.06), 0.02, 0.01) == "gain"
    assert contrast_verdict(_interval(-0.004, 0.006), _interval(-0.005, 0.008), 0.02, 0.01) == "equivalent"
    assert contrast_verdict({"low": None, "high": None, "difference": -0.5}, _interval(-0.6, -0.4), 0.02, 0.01) == "inconclusive"


def test_ordered_needs_every_step_above_zero():
    band = {s: 0.10 + 0.01 * s for s in range(5)}
    decay = {s: 0.05 + 0.012 * s for s in range(5)}
    count = {s: 0.00 + 0.009 * s for s in range(5)}
    verdict, steps = ordered_verdict([band, decay, count])
    assert verdict == "ordered" and len(steps) == 2
    assert ordered_verdict([band, count, decay])[0] == "not ordered"


def _per_seed(gap_by_seed):
    """"ours" = target + noise on every seed; "report" = noisier by each seed's gap (negative: better)."""
    generator = np.random.default_rng(0)
    target = generator.normal(size=(40, 8, 4))
    per_seed = {}
    for seed, gap in gap_by_seed.items():
        noise = generator.normal(size=target.shape)
        ours = target + 0.6 * noise
        report = target + (0.6 + gap) * noise
        per_seed[seed] = {"bins": 8, "sums": {
            name: record_sums(p, target, p.mean((0, 1)), target.mean((0, 1)))
            for name, p in (("ours@10", ours), ("report@10", report))}}
    return per_seed


def test_the_verdict_flips_when_the_data_flip_it():
    rules = {"level": 0.95, "resamples": 200, "rules": [
        {"name": "positions", "kind": "contrast", "first": "report@{short}", "second": "ours@{short}",
         "tracks": "long-range", "min_effect": 0.02, "margin": 0.01, "say": SAY}]}
    tracks = {"all": None, "long-range": [1, 3]}
    worse = decide(rules, _per_seed({s: 0.5 for s in range(5)}), tracks, {"short": 10})
    assert worse[0]["verdict"] == "loss" and worse[0]["statement"].startswith("loses -0.")
    better = decide(rules, _per_seed({s: -0.3 for s in range(5)}), tracks, {"short": 10})
    assert better[0]["verdict"] == "gain"
    # Seeds that disagree: no verdict beyond the noise.
    mixed = decide(rules, _per_seed({0: 0.6, 1: -0.25, 2: 0.5, 3: -0.2, 4: 0.0}), tracks, {"short": 10})
    assert mixed[0]["verdict"] == "inconclusive"
    with pytest.raises(UserError, match="tracks 'long-range/band'"):
        decide({**rules, "rules": [{**rules["rules"][0], "tracks": "long-range/band"}]},
               _per_seed({0: 0.5, 1: 0.5}), tracks, {"short": 10})


def test_the_committed_settings_file_is_valid_and_its_digest_is_its_bytes(tmp_path):
    values = read_rules_file(SETTINGS)
    assert len(values["seeds"]["conclusion"]) >= 5 and len(values["seeds"]["other"]) >= 3
    assert {rule["kind"] for rule in values["rules"]} == {"contrast", "ordered"}
    assert settings_digest(SETTINGS) == __import__("hashlib").sha256(SETTINGS.read_bytes()).hexdigest()
    broken = tmp_path / "settings.json"
    broken.write_text(json.dumps({**values, "seeds": {"conclusion": [0, 1], "other": [0, 1, 2]}}))
    with pytest.raises(UserError, match="seeds.conclusion has 2 seeds"):
        read_rules_file(broken)
    broken.write_text(json.dumps({**values, "rules": [{"kind": "contrast", "name": "x"}]}))
    with pytest.raises(UserError, match=r"rules\[0\]: lacks first"):
        read_rules_file(broken)
