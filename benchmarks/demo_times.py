"""Record how long each stage of a finished ``senformer demo`` took, for the time the demo says up front.

    python benchmarks/demo_times.py senformer-demo [--install-seconds 95] [--machine "2-core ..."]

Reads ``<OUT>/<stage>/run.json`` (``settings.seconds``, the wall time of each stage as the demo ran it) and
writes ``src/senformer/resources/demo_times.json``. Run it after ``make demo`` into a fresh folder on an
idle machine (``/usr/bin/time -v make demo`` gives the install + demo total beside it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
from pathlib import Path

from senformer.commands.demo import STAGES, DemoSettings, _comparable
from senformer.io import write_json
from senformer.record import machine_info

TARGET = Path(__file__).resolve().parents[1] / "src" / "senformer" / "resources" / "demo_times.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the finished demo's folder")
    parser.add_argument("--install-seconds", type=float, default=None, help="`make install`'s wall seconds")
    parser.add_argument("--machine", default=None, help="how to name the machine (default: from this one)")
    args = parser.parse_args()
    demo = json.loads((args.out / "demo.json").read_text(encoding="utf-8"))
    settings = demo.get("settings") or {}
    if _comparable(settings) != _comparable(DemoSettings(seed=settings.get("seed", 0)).to_dict()):
        parser.error(f"{args.out} is not a demo with the default settings (--quick?): the demo says only those")
    stages = {}
    for stage in STAGES:
        record = json.loads((args.out / stage / "run.json").read_text(encoding="utf-8"))
        stages[stage] = round(float(record["settings"]["seconds"]), 1)
    machine = args.machine or ", ".join(f"{key} {value}" for key, value in machine_info().items()
                                        if key in ("cpu", "usable_cpus", "torch"))
    previous = json.loads(TARGET.read_text(encoding="utf-8")) if TARGET.is_file() else {}
    write_json(TARGET, {
        "about": previous.get("about", ""), "measured": datetime.date.today().isoformat(), "machine": machine,
        "command": demo.get("command", "senformer demo"), "install_seconds": args.install_seconds,
        # rounded up: the total is never below the sum of the rounded stage times it is read beside
        "total_seconds": math.ceil(sum(stages.values()) * 10) / 10, "stages": stages})
    print(f"wrote {TARGET}: {sum(stages.values()):.0f} s in {len(stages)} stages")


if __name__ == "__main__":
    main()
