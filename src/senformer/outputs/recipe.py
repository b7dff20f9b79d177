"""The one fingerprint recipe: what changes a result, named once, for the command line and the Python API.

A command's output is fingerprinted from its command name, the settings that change numbers and the digests
of its input files (:func:`fingerprint`): paths never count (a moved input is the same input), nor do
settings that only say how the work is run (:data:`NOT_RESULTS`). A library writer given a model instead of
a weights path names the weights by :func:`weights_identity` (every byte of its tensors and its resolved
configuration), and so does the command once it has loaded that model, so a result written from Python is
up to date for the command with the same inputs and the other way round.

The command decides "up to date" before loading any model: the run record of an output keeps the digest of
the weights *files* it was computed from beside their identity (:func:`weights_record`), so a later run with
the same files finds the identity there (:func:`known_weights`) without loading them.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..fingerprint import value_digest

# Arguments that never change a result, and paths, whose files count through their digests instead.
NOT_RESULTS = {"run", "out", "overwrite", "progress", "num_workers", "threads", "shard", "command", "analysis",
               "data_command", "benchmark", "no_check_crc"}


def settings_of(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` less callables (argparse's ``run``): what a run record stores."""
    return {key: value for key, value in settings.items() if not callable(value)}


def fingerprint(command: str, settings: Mapping[str, Any], inputs: Mapping[str, Any],
                paths: Iterable[str] = ()) -> str:
    """The digest of ``command``'s output: ``settings`` less :data:`NOT_RESULTS` and the ``paths`` keys (their
    files count in ``inputs`` by digest), and ``inputs``."""
    paths = set(paths)
    counted = {key: value for key, value in settings_of(settings).items()
               if key not in NOT_RESULTS and key not in paths}
    return value_digest({"command": command, "settings": counted, "inputs": dict(inputs)})


def weights_identity(model) -> dict[str, Any]:
    """What a model's weights contribute to a result: every byte of its tensors and its resolved configuration
    (``--attention`` and ``--set`` included), ``{"tensors": sha256, "config": {...}}``."""
    from ..fingerprint import weights_digest

    return {"tensors": weights_digest(model), "config": model.config.to_dict()}


def weights_record(identity: Mapping[str, Any], files: str | None = None, overrides: Mapping | None = None) -> dict:
    """The ``weights`` entry of a run record: the identity, and the files (and overrides) it was loaded with."""
    return {**identity, "files": files, "overrides": dict(overrides or {})}


def known_weights(records: Iterable[Mapping[str, Any] | None], files: str, overrides: Mapping | None) -> dict | None:
    """The identity of weights files of digest ``files`` loaded with ``overrides``, from earlier run records
    that computed it (None when none did: the model must be loaded to know it)."""
    for record in records:
        weights = ((record or {}).get("inputs") or {}).get("weights")
        if isinstance(weights, dict) and weights.get("files") == files and "tensors" in weights and \
                value_digest(weights.get("overrides") or {}) == value_digest(dict(overrides or {})):
            return {"tensors": weights["tensors"], "config": weights["config"]}
    return None
