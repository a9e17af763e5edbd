"""latentrm.runtime: threads, devices and the embed.dtype=auto rule."""

from __future__ import annotations

import pytest
import torch

import latentrm.runtime as rt
from latentrm.errors import ConfigError


def test_auto_dtype_is_bf16_exactly_where_the_cpu_has_bf16_units(monkeypatch):
    monkeypatch.setattr(rt, "cpu_has_bf16", lambda: True)
    assert rt.resolve_dtype("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(rt, "cpu_has_bf16", lambda: False)
    assert rt.resolve_dtype("auto", "cpu") == "float32"
    assert rt.resolve_dtype("float16", "cpu") == "float16"  # an explicit choice stays
    with pytest.raises(ConfigError, match="embed.dtype must be one of"):
        rt.resolve_dtype("int4", "cpu")


def test_cpu_bf16_detection_falls_back_to_the_os_flags(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(rt, "cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert rt.cpu_has_bf16()
    monkeypatch.setattr(rt, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert not rt.cpu_has_bf16()


def test_torch_threads_restores_the_count():
    before = torch.get_num_threads()
    with rt.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_training_threads_is_one_for_small_models_only():
    # The d=576 VAE (~76k parameters) and head (~37k) train on one thread; at d=4096 (~530k,
    # ~260k) the requested count stays.
    assert rt.training_threads(76_000, 2) == 1
    assert rt.training_threads(rt.SMALL_MODEL_PARAMS - 1, 4) == 1
    assert rt.training_threads(rt.SMALL_MODEL_PARAMS, 4) == 4
    assert rt.training_threads(530_000, 2) == 2
    with rt.torch_threads(3):
        assert rt.training_threads(10**6) == 3


def test_cpu_name_reads_the_model_name_line(monkeypatch):
    import io

    info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14  \nflags\t: x\n"
    monkeypatch.setattr(rt, "open", lambda *a, **k: io.StringIO(info), raising=False)
    assert rt.cpu_name() == "AMD EPYC 9R14"

    def missing(*a, **k):
        raise FileNotFoundError("/proc/cpuinfo")

    monkeypatch.setattr(rt, "open", missing, raising=False)
    assert rt.cpu_name() == "unknown CPU"
