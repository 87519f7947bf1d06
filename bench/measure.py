"""Measuring one call: wall time, page faults, peak extra memory, the machine's matmul throughput, and a description of
the machine.

Page faults: the process's minor faults (getrusage) during the timed call, all its threads included. A call that
allocates fresh large buffers faults in every page of them (glibc hands blocks above its mmap threshold back to the
kernel when they are freed), which costs time that its arithmetic does not explain.

Peak memory on CPU: torch.profiler with profile_memory=True records every allocation and free made through torch's
CPU allocator; the running sum of those events, maximised over the call, is the op's peak *extra* memory (bytes
allocated by the call above what was live before it: its temporaries plus its output). It does not see memory that
libraries allocate outside torch (e.g. oneDNN/MKL scratch buffers, Python objects), which is small here. On CUDA:
torch.cuda.max_memory_allocated() minus the bytes allocated before the call.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Wall-clock seconds of one call of fn (device work included)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def minor_faults() -> int:
    """Minor page faults of this process so far (all threads)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def peak_extra_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated by one call of fn above what was live before it (its output included)."""
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return int(peak)


def timing_stats(times: list[float]) -> dict:
    """Median and spread (min, quartiles, max) of repeated timings in seconds."""
    ordered = sorted(times)
    if len(ordered) >= 2:
        q25, _, q75 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q25 = q75 = ordered[0]
    return {"median_s": statistics.median(ordered), "min_s": ordered[0], "max_s": ordered[-1],
            "q25_s": q25, "q75_s": q75, "times_s": times}


def matmul_probe(size: int, device: torch.device) -> Callable[[], object]:
    """A (size x size) @ (size x size) float32 matmul: the machine's reference throughput."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device)
    b = torch.randn(size, size, generator=gen).to(device)
    return lambda: a @ b


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: torch.device) -> dict:
    """What ran the benchmark: CPU/GPU, cores, torch threads, versions, load average."""
    info = {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),   # AVX2 / AVX512: kernels and rounding differ
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "load_average_1_5_15": load_average(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (`uptime`), None where unavailable."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
