"""Device names and native bf16: a bad name or a missing GPU is a user error; bf16 only where it is native."""

import warnings

import pytest
import torch

from senformer import device as devices
from senformer.errors import UserError

FLAGS = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 {extra}\n\nprocessor\t: 1\n"


def cpuinfo(tmp_path, extra: str = ""):
    path = tmp_path / "cpuinfo"
    path.write_text(FLAGS.format(extra=extra))
    return path


def test_auto_and_cpu_resolve():
    assert devices.resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert devices.resolve_device("auto").type == expected
    assert devices.resolve_device().type == expected


@pytest.mark.parametrize("name", ["gpu0", "cuda:", "cuda:x", "CPU", "", "cpu:0:1"])
def test_malformed_device_names_are_user_errors(name):
    with pytest.raises(UserError, match=f"device {name!r} is not one of auto, cpu, cuda, cuda:N"):
        devices.resolve_device(name)


def test_a_cuda_device_the_machine_lacks_is_a_user_error():
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        assert devices.resolve_device("cuda:0") == torch.device("cuda:0")
        with pytest.raises(UserError, match=f"this machine has {count} CUDA device"):
            devices.resolve_device(f"cuda:{count}")
    else:
        for name in ("cuda", "cuda:1"):
            with pytest.raises(UserError, match=f"device {name!r}: no CUDA device is available"):
                devices.resolve_device(name)


def test_bf16_is_native_only_with_avx512_bf16_or_amx(tmp_path):
    assert not devices.bf16_supported("cpu", cpuinfo(tmp_path))
    assert devices.bf16_supported("cpu", cpuinfo(tmp_path, "avx512f avx512_bf16"))
    assert devices.bf16_supported(torch.device("cpu"), cpuinfo(tmp_path, "amx_tile amx_bf16 amx_int8"))
    assert not devices.bf16_supported("cpu", cpuinfo(tmp_path, "amx_tile amx_int8"))  # AMX without its bf16 unit
    assert not devices.bf16_supported("cpu", tmp_path / "absent")  # flags unknown: not assumed
    assert not devices.bf16_supported("meta", cpuinfo(tmp_path, "avx512_bf16"))
    assert devices.cpu_flags(cpuinfo(tmp_path, "avx512_bf16")) >= {"fpu", "avx2", "avx512_bf16"}


def test_cuda_without_a_gpu_has_no_native_bf16():
    if not torch.cuda.is_available():
        assert not devices.bf16_supported("cuda")


def test_a_bf16_request_on_an_emulating_device_warns_once_and_runs_fp32(monkeypatch):
    monkeypatch.setattr(devices, "bf16_supported", lambda device: False)
    monkeypatch.setattr(devices, "_warned_no_bf16", set())
    assert devices.use_bf16(False, "cpu") is False
    with pytest.warns(UserWarning, match="--bf16 ignored, running fp32: this CPU has none of avx512_bf16, amx_bf16"):
        assert devices.use_bf16(True, "cpu") is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert devices.use_bf16(True, "cpu") is False  # once per device type
    monkeypatch.setattr(devices, "bf16_supported", lambda device: True)
    assert devices.use_bf16(True, "cpu") is True
