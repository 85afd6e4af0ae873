"""Device.parse: CPU by default, CUDA only where it exists, clear errors otherwise."""

from __future__ import annotations

import pytest
import torch

from worker import Device, DeviceError


def test_no_gpu_means_cpu_float32() -> None:
    device = Device.parse(None)
    assert device.name == "cpu" and not device.is_cuda
    assert device.torch_dtype is torch.float32
    assert device.torch_device == torch.device("cpu")


def test_negative_index_is_refused() -> None:
    with pytest.raises(DeviceError, match="invalid GPU index"):
        Device.parse(-1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_without_cuda_says_so_and_hints_at_cpu() -> None:
    with pytest.raises(DeviceError) as err:
        Device.parse(0)
    assert "CUDA" in err.value.message
    assert "without --gpu" in err.value.hint


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_index_out_of_range_names_the_count() -> None:
    count = torch.cuda.device_count()
    with pytest.raises(DeviceError, match=f"has {count} GPU"):
        Device.parse(count)
    device = Device.parse(0)
    assert device.name == "cuda:0" and device.torch_dtype is torch.float16
