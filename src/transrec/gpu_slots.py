"""GPU slot allocation for concurrent jobs: `transrec gpu-run --gpus N -- <command>`.

Snakemake counts `resources: gpu=N` but does not say *which* GPUs a job may use (snakemake issue 281):
with `--resources gpu=4` and four gpu=1 jobs at once, every job would see all GPUs and land on GPU 0.
gpu-run claims N free device slots through lock files (one `flock`ed file per device in a shared lock
folder), sets CUDA_VISIBLE_DEVICES to exactly those devices, runs the command, and frees the slots when
it exits — also when it is killed, since the kernel drops a dead process's locks. With N > 1 the command
is started under `torchrun --nproc_per_node=N`. Without GPUs it runs the command as it is.

TRANSREC_GPU_COUNT overrides the detected device count (tests use it to fake a 4-GPU pool on a CPU
machine); TRANSREC_GPU_LOCK_DIR sets the lock folder (default: .gpu_slots in the working folder, shared by
all jobs of one workflow run).
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

from transrec.errors import TransrecError

POLL_SECONDS = 0.5


def device_count() -> int:
    if "TRANSREC_GPU_COUNT" in os.environ:
        return int(os.environ["TRANSREC_GPU_COUNT"])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    try:
        out = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=20)
        return len([line for line in out.stdout.splitlines() if line.startswith("GPU ")])
    except (OSError, subprocess.SubprocessError):
        return 0


def _device_names(count: int) -> list[str]:
    """Physical ids to hand out: the ones CUDA_VISIBLE_DEVICES already allows, else 0..count-1."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and "TRANSREC_GPU_COUNT" not in os.environ:
        return [d.strip() for d in visible.split(",") if d.strip()]
    return [str(i) for i in range(count)]


def acquire(n: int, lock_dir: Path, timeout: float | None = None) -> tuple[list[str], list]:
    """Block until n device slots are free; return (device ids, open lock files to keep alive)."""
    names = _device_names(device_count())
    if n > len(names):
        raise TransrecError(f"job asks for {n} GPUs but only {len(names)} exist")
    lock_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    while True:
        held: list = []
        for name in names:
            fh = open(lock_dir / f"gpu-{name}.lock", "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            held.append((name, fh))
            if len(held) == n:
                for _, f in held:
                    f.seek(0), f.truncate(), f.write(f"{os.getpid()}\n"), f.flush()
                return [name for name, _ in held], [f for _, f in held]
        for _, fh in held:  # not enough free: release what we took, so jobs never deadlock on partial sets
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
        if timeout is not None and time.monotonic() - start > timeout:
            raise TransrecError(f"no {n} free GPU slot(s) in {lock_dir} after {timeout:.0f}s")
        time.sleep(POLL_SECONDS)


def _launcher(n: int, command: list[str]) -> list[str]:
    """A transrec command on several GPUs runs under torchrun, one process per GPU (DDP)."""
    if n > 1 and command[:1] == ["transrec"]:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                "-m", "transrec.cli", *command[1:]]
    return command


def gpu_run(n: int, command: list[str], lock_dir: Path | None = None) -> int:
    if not command:
        raise TransrecError("gpu-run: no command given (usage: transrec gpu-run --gpus N -- <command>)")
    lock_dir = Path(os.environ.get("TRANSREC_GPU_LOCK_DIR", lock_dir or ".gpu_slots"))
    if n <= 0 or device_count() == 0:
        return subprocess.call(command)  # CPU machine, or a job that needs no GPU
    if os.environ.get("SLURM_JOB_ID") and "TRANSREC_GPU_COUNT" not in os.environ:
        devices = _device_names(device_count())[:n]  # SLURM allocated this job's GPUs: use them as given
        return subprocess.call(_launcher(n, command), env={**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(devices)})
    devices, locks = acquire(n, lock_dir)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(devices)}
    print(f"gpu-run: CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}", file=sys.stderr, flush=True)
    try:
        return subprocess.call(_launcher(n, command), env=env)
    finally:
        for fh in locks:
            fh.close()
