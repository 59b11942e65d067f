"""Which device runs the work: one resolution of 'auto' / 'cpu' / 'cuda:N' for training,
decoding and the views, and whether bf16 is native there."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import DeviceError

__all__ = ["resolve_device", "native_bf16"]


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else `platform.machine()`."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively here: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or
    AMX (Linux /proc/cpuinfo flags). Elsewhere torch emulates it, several times slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' = CUDA when torch sees a GPU, else CPU; a device this machine lacks is a `DeviceError`."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"device {str(device)!r} is not a device name (auto, cpu, cuda, cuda:N)") from exc
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceError(f"device {str(device)!r} asked for, but torch sees no Apple GPU (MPS) on this machine "
                          f"(torch {torch.__version__}); use --device cpu or auto")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {str(device)!r} is not supported here (auto, cpu, cuda, cuda:N, mps)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(device)!r} asked for, but torch sees no CUDA GPU on this machine "
                              f"(torch {torch.__version__}); use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {str(device)!r} asked for, but torch sees {torch.cuda.device_count()} GPU(s)")
    return dev
