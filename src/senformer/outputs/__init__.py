"""Every result senformer writes goes through one :class:`Output`: path and kind, lock, existing-output rule,
fingerprint, partial file and resume, shards and their merge, run record, and the finish.

Locking, partial files, the final rename and run records live only in this package (a test reads every other
module for them). The steps, in order:

1. **Lock.** ``with Output(...)`` holds an exclusive lock on ``OUT.lock`` beside ``OUT`` (:mod:`.locks`): a
   second run onto the same output is refused in one line naming the holder's host and pid; the kernel drops
   the lock when its holder dies, even by ``kill -9``.
2. **Rule.** The fingerprint (:mod:`.recipe`: the command, the settings that change numbers, the digests of
   the input files; a model's weights by :func:`.recipe.weights_identity`) is compared with ``OUT``'s run
   record (:mod:`.rule`): up to date (nothing to compute), refused unless ``overwrite``, ``OUT.partial``
   resumed, or a partial of other inputs replaced with one line saying so.
3. **Partial.** :meth:`Output.start` creates ``OUT.partial`` (and its record); the writer streams results
   into it, inside :meth:`Output.writing` blocks: a full disk, an I/O error, a read-only file system or a
   dying HDF5 file is one line naming the file and what was being written (exit 2), and the partial stays
   resumable (:mod:`.faults`).
4. **Finish.** :meth:`Output.finish` checks the result (``verify``: every value finite and every row
   written, except values the format defines as missing), flushes every byte to the device, then renames
   ``OUT.partial`` onto ``OUT`` and writes the run record; an old ``OUT`` stays until then.
5. **Shards.** ``Output(..., shard=Shard(k, n))`` computes one part into ``OUT.shards/`` and the process
   that ends last merges the parts into ``OUT`` (:mod:`.shards`).

A command applies the rule before it loads any model and hands the open output to the library writer; a
library call given a path builds its own ``Output`` with the same recipe, so the same result made from
Python or from the command line is up to date for both::

    from senformer.outputs import DIRECTORY, Output

    with Output("results/", DIRECTORY, command="analyze tracks", settings=settings,
                inputs={"weights": weights_files_digest(path)}, paths=("weights",), overwrite=False) as output:
        if output.up_to_date:
            return output.path
        folder = output.start()                      # OUT.partial/, with its run record
        with output.writing("per_track.csv"):        # ENOSPC/EIO/EROFS -> one line, exit 2
            write_csv(folder / "per_track.csv", table)
        output.finish(verify=check_tables, head="human")   # rename onto results/ and record it

Stage bookkeeping (a demo or study folder) is one ``Output`` per stage folder with the stage's own
fingerprint: ``up_to_date`` replaces ``.done`` markers and file dates.

Readers refuse what was never finished: a prediction file's rows past its ``completed`` count or holding its
NaN fill are refused by ``senformer.predictions.read_prediction`` (and so ``senformer plot``), and a finish
checks the same before the rename (``senformer.predict.layout.check_complete``).
"""

from __future__ import annotations

from .faults import WRITE_FAULTS, close_quietly, first_non_finite, writing
from .locks import hold, lock_path, output_lock
from .output import Output, opened
from .recipe import NOT_RESULTS, fingerprint, known_weights, weights_identity, weights_record
from .rule import (DIRECTORY, FILE, RUN_RECORD, move_into_place, partial_path, read_record, record_path, recorded_fingerprint,
                   refuse_unfinished)
from .shards import Shard, rank_device, refuse_split, resolve_shard, unit_starts

__all__ = [
    "DIRECTORY", "FILE", "NOT_RESULTS", "Output", "RUN_RECORD", "Shard", "WRITE_FAULTS", "close_quietly",
    "fingerprint", "first_non_finite", "hold", "known_weights", "lock_path", "move_into_place", "opened", "output_lock",
    "partial_path", "rank_device", "read_record", "record_path", "recorded_fingerprint", "refuse_split", "refuse_unfinished",
    "resolve_shard", "unit_starts", "weights_identity", "weights_record", "writing",
]
