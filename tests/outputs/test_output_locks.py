"""One writer per output: the lock on ``OUT.lock`` (senformer.outputs.locks)."""

import os
import subprocess
import sys

import pytest


def test_a_second_writer_is_refused_naming_the_holder_and_the_lock_is_removed_after(tmp_path):
    import socket

    from senformer.errors import UserError
    from senformer.outputs import output_lock

    out = tmp_path / "predictions.h5"
    with output_lock(out) as lock:
        assert lock == tmp_path / "predictions.h5.lock"
        assert lock.read_text() == f"host {socket.gethostname()} pid {os.getpid()}\n"
        with pytest.raises(UserError, match=rf"predictions.h5 is being written by another run \(pid {os.getpid()} "
                                            rf"on host {socket.gethostname()}, lock .*predictions.h5.lock\)") as error:
            with output_lock(out):
                pass
        assert "\n" not in str(error.value)
    assert not lock.exists()
    with output_lock(out):  # free again
        assert lock.exists()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    import signal
    import subprocess
    import sys

    from senformer.errors import UserError
    from senformer.outputs import output_lock

    out = tmp_path / "scores.tsv"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom senformer.outputs import output_lock\n"
         f"with output_lock({str(out)!r}):\n    print('locked', flush=True)\n    sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=rf"pid {holder.pid} on host"):
            with output_lock(out):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / "scores.tsv.lock").exists()  # left behind by kill -9, but not locked
    with output_lock(out):
        pass


# Existing outputs ---------------------------------------------------------------------------------
