"""Runtime setup, in one place for every command that runs a model: the process group under torchrun,
the device, and CPU threads."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from transrec.errors import TransrecError


def distributed(timeout_min: float = 60) -> tuple[int, int, int]:
    """(rank, world size, local rank); initialises the process group under torchrun.

    The timeout covers rank 0's validation pass, during which the other ranks wait at a collective:
    the default (10 min for NCCL) kills a job that evaluates a large catalogue."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo",
                                timeout=timedelta(minutes=timeout_min))
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def pick_device(setting: str, local_rank: int) -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise TransrecError("train.device is cuda but no CUDA device is available")
    if setting in ("auto", "cuda") and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def set_threads(n: int, world: int = 1) -> int:
    """n > 0: n threads; 0: OMP_NUM_THREADS when set (Snakemake sets it to the rule's threads), else the
    cores available to this process (at most 8), shared among the ranks of a CPU torchrun."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    env = os.environ.get("OMP_NUM_THREADS", "")
    n = n or (int(env) if env.isdigit() and int(env) > 0 else max(1, min(8, cores // max(1, world))))
    torch.set_num_threads(n)
    return n


@dataclass(frozen=True)
class Runtime:
    """Where a run computes: its rank among `world` processes, its device, its CPU threads."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    threads: int | None  # None on a GPU

    @property
    def master(self) -> bool:
        """Rank 0 evaluates, logs and writes every file."""
        return self.rank == 0


def setup(device: str, num_threads: int, dist_timeout_min: float = 60) -> Runtime:
    rank, world, local_rank = distributed(dist_timeout_min)
    dev = pick_device(device, local_rank)
    return Runtime(rank, world, local_rank, dev, set_threads(num_threads, world) if dev.type == "cpu" else None)


def local_device(train: dict) -> torch.device:
    """The set-up of a command that runs a model in one process (cache, evaluate, recommend, add-items,
    export): params' train.device, and train.num_threads on a CPU. No process group: these never run
    under torchrun."""
    device = pick_device(train["device"], 0)
    if device.type == "cpu":
        set_threads(train["num_threads"])
    return device


def mean_over_ranks(rt: Runtime, value: float) -> float:
    if rt.world == 1:
        return value
    import torch.distributed as dist

    total = torch.tensor([value], dtype=torch.float64, device=rt.device)
    dist.all_reduce(total)
    return float(total.item()) / rt.world


def rank0_flag(rt: Runtime, flag: bool) -> bool:
    """Rank 0's decision (e.g. early stopping), on every rank."""
    if rt.world == 1:
        return flag
    import torch.distributed as dist

    value = torch.tensor([int(flag)], device=rt.device)
    dist.broadcast(value, 0)
    return bool(value.item())


def teardown(rt: Runtime) -> None:
    if rt.world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
