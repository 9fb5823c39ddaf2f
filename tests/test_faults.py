"""Faults in the whole DAG: `snakemake` and `dvc repro` SIGKILLed (with every job they started) at seeded
random moments and started again end with metrics bit-identical to an uninterrupted run; a second
`snakemake` in a folder where one runs is refused in one line; a write that runs out of space leaves no
file under its name and says so in one line."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, make_workdir, run, tiny_params


def one_target(bert) -> dict:
    """A tiny study on one target and no source: data, cache, scratch, id, popularity, report."""
    params = tiny_params(bert)
    params["platforms"] = {"tgt": params["platforms"]["tgt"]}
    params["study"]["source"] = None
    params["transfer"]["settings"] = ["scratch", "id"]
    params["train"]["epochs"] = 4  # long enough for a kill to land inside training too
    return params


def metrics(work: Path) -> dict:
    """test and valid metrics of every run (wall time differs between runs)."""
    return {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k != "wall_s"}
            for p in sorted((work / "results" / "metrics").rglob("*.json"))}


def _env() -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "WANDB_MODE": "disabled"}


def kill_at_random_moments(cmd: list[str], work: Path, kills: int, horizon: float, seed: int,
                           while_running=None) -> int:
    """Start cmd, SIGKILL its whole process group after a seeded random delay, `kills` times (a run that
    finishes first counts no kill). Returns the number of kills that hit a running process."""
    rng, hit = random.Random(seed), 0
    for attempt in range(4 * kills):
        if hit == kills:
            break
        log = open(work / f"attempt{attempt}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(cmd, cwd=work, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + rng.uniform(0.15, 1.0) * horizon
        if attempt == 0 and while_running is not None:
            while_running(proc)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            hit += 1
        elif proc.returncode != 0:
            raise AssertionError(f"attempt {attempt} failed by itself:\n{(work / f'attempt{attempt}.log').read_text()[-3000:]}")
        proc.wait()
        log.close()
    return hit


def _second_run_is_refused(work: Path):
    def check(first: subprocess.Popen) -> None:
        lock = work / ".snakemake" / "transrec.lock"
        end = time.monotonic() + 60
        while time.monotonic() < end and not (lock.is_file() and lock.read_text().strip() == str(first.pid)):
            time.sleep(0.05)
        second = run([str(BIN / "snakemake"), "--cores", "1"], work, check=False)
        err = "\n".join(line for line in second.stderr.strip().splitlines()
                        if not line.startswith("Using workflow specific profile"))  # Snakemake's notice
        assert second.returncode != 0 and len(err.splitlines()) == 1, err
        assert f"another snakemake (pid {first.pid}) is running in" in err
        assert run([str(BIN / "snakemake"), "-n", "--cores", "1"], work).returncode == 0  # a dry run may look
    return check


@pytest.mark.slow
def test_snakemake_killed_five_times_ends_bit_identical(tmp_path, tiny_bert_dir):
    params = one_target(tiny_bert_dir)
    reference = make_workdir(tmp_path / "ref", params)
    start = time.monotonic()
    run([str(BIN / "snakemake"), "--cores", "1"], reference, timeout=1200)
    horizon = (time.monotonic() - start) / 4  # kills spread over the run, resumed progress included

    work = make_workdir(tmp_path / "killed", params)
    cmd = [str(BIN / "snakemake"), "--cores", "1"]
    hit = kill_at_random_moments(cmd, work, kills=5, horizon=horizon, seed=20261202,
                                 while_running=_second_run_is_refused(work))
    assert hit >= 5
    run(cmd, work, timeout=1200)  # no --unlock: the killed runs' stale Snakemake locks are cleared
    assert metrics(work) == metrics(reference) and len(metrics(work)) == 3
    assert not list((work / "results").rglob(".*.tmp*")) and not list((work / "data").rglob(".*.tmp*"))


@pytest.mark.slow
def test_dvc_repro_killed_three_times_ends_bit_identical(tmp_path, tiny_bert_dir):
    params = one_target(tiny_bert_dir)
    reference = make_workdir(tmp_path / "ref", params, with_dvc=True)
    start = time.monotonic()
    run([str(BIN / "dvc"), "repro", "--quiet"], reference, timeout=1200)
    horizon = (time.monotonic() - start) / 3

    work = make_workdir(tmp_path / "killed", params, with_dvc=True)
    cmd = [str(BIN / "dvc"), "repro", "--quiet"]
    assert kill_at_random_moments(cmd, work, kills=3, horizon=horizon, seed=7) >= 3
    run(cmd, work, timeout=1200)
    assert metrics(work) == metrics(reference) and len(metrics(work)) == 3
    assert "Data and pipelines are up to date" in run([str(BIN / "dvc"), "repro"], work).stdout


def test_a_full_disk_leaves_no_file_and_one_line(tmp_path, tiny_bert_dir, capsys):
    """The processed folder on a 64 KiB tmpfs: clean's parquet files do not fit."""
    from transrec.cli import main

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    params = tiny_params(tiny_bert_dir)
    work = make_workdir(tmp_path / "w", params)
    small = work / "data" / "processed"
    small.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        os.chdir(work)
        assert main(["download", "tgt"]) == 0
        free = shutil.disk_usage(small).free
        (small / "filler").write_bytes(b"\0" * (free - 4096))  # one block left: the first parquet does not fit
        capsys.readouterr()
        assert main(["clean", "tgt"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "no space left on the device" in err, err
        named = Path(err.split(": no space")[0].split("error: ")[-1])
        assert (work / named).parent == small / "tgt" and not (work / named).exists()
        assert not list((small / "tgt").glob(".*.tmp*"))  # and no temp file either
    finally:
        os.chdir(tmp_path)
        subprocess.run(["umount", str(small)], check=False)
