"""Two gloo processes with batch b == one process with batch 2b (torchrun), BatchNorm frozen or cross-rank."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_support import read_weights

HERE = Path(__file__).resolve().parent
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _run(command, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    """``train(mode, processes)`` -> output directory; each run happens once per module."""
    root = tmp_path_factory.mktemp("distributed")
    done = {}

    def run(mode, processes):
        if (mode, processes) not in done:
            if mode == "borzoi" and not (root / "borzoi-init").exists():
                from test_train_borzoi import tiny_borzoi

                tiny_borzoi().save_pretrained(root / "borzoi-init")
            out = root / f"{mode}-{processes}"
            worker = [str(HERE / "ddp_worker.py"), str(out), mode, str(4 // processes)]
            if processes == 1:
                _run([sys.executable, *worker], root)
            else:
                _run([str(TORCHRUN), "--standalone", "--nproc_per_node", str(processes), *worker], root)
            done[mode, processes] = out
        return done[mode, processes]

    return run


def _max_difference(first, second):
    return max(float((first[name].double() - second[name].double()).abs().max()) for name in first)


def _eval_records(out):
    lines = (out / "log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if json.loads(line)["kind"] == "eval"]


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun not installed beside this Python")
@pytest.mark.parametrize("mode", ["frozen", "cross-rank"])
def test_two_gloo_processes_equal_one_process_with_twice_the_batch(train, mode):
    single = train(mode, 1)
    double = train(mode, 2)
    expected, got = read_weights(single / "weights"), read_weights(double / "weights")
    assert expected.keys() == got.keys()
    assert _max_difference(expected, got) < 2e-5
    statistics = [name for name in expected if name.endswith("running_var")]
    if mode == "frozen":
        assert all(int(expected[n.replace("running_var", "num_batches_tracked")]) == 0 for n in statistics)
    else:
        assert all(int(got[n.replace("running_var", "num_batches_tracked")]) == 6 for n in statistics)  # 3 steps x 2 heads
    # Validation is sharded over the ranks and pooled: the same numbers.
    for one, two in zip(_eval_records(single), _eval_records(double), strict=True):
        assert one["pearson"] == pytest.approx(two["pearson"], abs=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun not installed beside this Python")
def test_per_rank_batchnorm_statistics_differ_from_the_global_batch(train):
    """Control for the test above: with per-rank statistics the two runs are not the same update."""
    expected = read_weights(train("cross-rank", 1) / "weights")
    local = read_weights(train("local", 2) / "weights")
    assert _max_difference(expected, local) > 1e-4


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun not installed beside this Python")
def test_borzoi_on_two_gloo_processes_equals_one_process_with_twice_the_batch(train):
    single, double = train("borzoi", 1), train("borzoi", 2)
    expected, got = read_weights(single / "weights"), read_weights(double / "weights")
    assert expected.keys() == got.keys()
    assert _max_difference(expected, got) < 2e-5
    for one, two in zip(_eval_records(single), _eval_records(double), strict=True):
        assert one["pearson"] == pytest.approx(two["pearson"], abs=1e-5)
