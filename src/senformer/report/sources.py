"""What the report reads from a run folder: JSON files (a malformed one is a user error naming it), which
stages finished (their run records), and the machine a recorded result ran on, in words."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError

# Recorded results live in the repository (not in an installed wheel): benchmarks/results/ beside src/.
RECORDED_RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results"


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None


def stage_finished(folder: Path) -> dict | None:
    """The run record of a finished ``senformer demo`` stage (command ``demo <stage>``: written once the stage
    is complete, removed when its inputs change), else None."""
    from ..outputs import DIRECTORY, Output

    command = f"demo {folder.name}"
    record = Output(folder, DIRECTORY, command=command, grown=True).recorded()
    return record if record is not None and record.get("command") == command else None


def machine_text(machine: dict) -> str:
    """The machine of a recorded run in a few words: device, cores, memory, torch."""
    memory = f", {machine['memory_bytes'] / 1e9:.0f} GB RAM" if machine.get("memory_bytes") else ""
    flags = f" ({', '.join(machine['cpu_bf16_flags'])})" if machine.get("cpu_bf16_flags") else ""
    cpu = machine.get("cpu") or machine.get("cpu_model") or machine.get("processor") or "CPU"
    device = machine.get("gpu") or f"{cpu}{flags}, {machine.get('usable_cpus') or machine.get('cpu_count', '?')} cores"
    return f"{device}{memory}, torch {machine.get('torch', '?')}"
