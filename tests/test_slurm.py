"""A real SLURM: a single-node cluster (munged, slurmctld, slurmd from Debian's slurm-wlm) started in a temp
folder, and the tiny DAG run through the project's SLURM profile (workflow/profiles/slurm). Every job must
go through sbatch, every output must exist, and the metrics must equal a local run's.

`.ci/run` installs slurm-wlm and munge with apt; the test skips, in one line, where they are missing or
it does not run as root (slurmd must). Every daemon it starts is stopped by its pid, also on failure."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, make_workdir, run, tiny_params
from transrec import jobs

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, what: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _stop(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, IndexError):
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """SLURM_CONF of a running one-node cluster (partition `debug`), stopped at the end."""
    missing = [d for d in DAEMONS if not Path(d).exists()]
    if missing:
        pytest.skip(f"SLURM not installed ({', '.join(missing)} missing; .ci/run installs slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("SLURM test needs root (slurmd runs jobs as their user)")
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir()
    # munged on its default socket: slurmd fetches its configuration (configless) before it could read
    # another socket's path from it. A munged already running there is used and left running.
    sock, munge_pid = Path("/run/munge/munge.socket.2"), Path("/run/munge/munged.pid")
    ours = not sock.exists()
    pids = [munge_pid if ours else None, root / "slurmctld.pid", root / "slurmd.pid"]
    try:
        if ours:
            Path("/run/munge").mkdir(exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge")
            subprocess.run(["runuser", "-u", "munge", "--", DAEMONS[0], "--force"], check=True, timeout=30)
            _wait(sock.exists, "munged's socket")
        node = subprocess.run(["/usr/sbin/slurmd", "-C"], capture_output=True, text=True, check=True).stdout
        node = " ".join(f for f in node.splitlines()[0].split() if not f.startswith("UpTime="))
        host, ctld_port = socket.gethostname(), _free_port()
        conf = root / "slurm.conf"
        conf.write_text("\n".join([
            "ClusterName=transrec-test", "SlurmctldHost=localhost", "SlurmUser=root",
            f"SlurmctldPort={ctld_port}", f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={pids[1]}", f"SlurmdPidFile={pids[2]}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
            "MpiDefault=none", "ReturnToService=2",
            # configless: slurmd fetches this file from slurmctld and job steps find it through
            # /run/slurm/conf (the SLURM plugin's job step drops SLURM_CONF from srun's environment)
            "SlurmctldParameters=enable_configless",
            f"{node} NodeHostname={host} NodeAddr=127.0.0.1 State=UNKNOWN",
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""]))
        env = {**os.environ, "SLURM_CONF": str(conf)}
        subprocess.run([DAEMONS[1], "-f", str(conf)], check=True, env=env, timeout=30)
        subprocess.run([DAEMONS[2], "--conf-server", f"localhost:{ctld_port}"], check=True, env=env, timeout=30)
        _wait(lambda: "idle" in subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                                               env=env).stdout, "the node to be idle")
        yield conf
    finally:
        for pid_file in reversed(pids):
            if pid_file is not None:
                _stop(pid_file)
        link = Path("/run/slurm/conf")  # slurmd's pointer to its config cache (in our temp folder)
        if link.is_symlink() and str(root) in os.readlink(link):
            link.unlink()


@pytest.mark.slow
def test_tiny_dag_runs_through_sbatch_with_local_metrics(slurm, tmp_path, tiny_bert_dir):
    params = tiny_params(tiny_bert_dir)
    params["transfer"]["settings"] = ["scratch", "finetune", "id"]
    params["train"]["gpus"] = 0  # the test cluster has no GPU (gres); a GPU partition takes train.gpus >= 1
    local = make_workdir(tmp_path / "local", params)
    cluster = make_workdir(tmp_path / "cluster", params)
    run([str(BIN / "snakemake"), "--cores", "1", "--quiet"], local, timeout=1200)

    small = "mem_mb=2000 runtime=30".split()  # the profile's sizes do not fit this 2-core machine
    os.environ["SLURM_CONF"] = str(slurm)
    try:
        proc = run([str(BIN / "snakemake"), "--workflow-profile", "workflow/profiles/slurm",
                    "--slurm-no-account", "--slurm-status-command", "squeue",
                    "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
                    "--slurm-keep-successful-logs", "--latency-wait", "5", "--jobs", "4",
                    "--default-resources", "slurm_partition=debug", *small,
                    "--set-resources", *[f"{rule}:{kv}" for rule in ("pretrain", "transfer")
                                         for kv in ("slurm_partition=debug", *small)],
                    "--set-threads", "resize=1", "pretrain=1", "transfer=1"],
                   cluster, timeout=1500)
    finally:
        del os.environ["SLURM_CONF"]
    # every job went through sbatch: one SLURM log per job, named by its SLURM job id, under its rule
    base = cluster / ".snakemake" / "slurm_logs"
    logs = {int(p.stem): p.relative_to(base).parts[0].removeprefix("rule_") for p in base.rglob("*.log")}
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", proc.stdout + proc.stderr)
    assert sorted(map(int, submitted)) == sorted(logs), (submitted, logs)
    table = jobs.jobs(params)  # the study's every job: data, cache, pretrain, transfers, popularity, report, export
    assert len(logs) == len(table), logs
    assert set(logs.values()) == {j.step for j in table}

    for name in ("pretrain", *params["transfer"]["settings"]):
        folder = "src" if name == "pretrain" else "tgt"
        a = json.loads((local / "results/metrics" / folder / f"{name}.json").read_text())
        b = json.loads((cluster / "results/metrics" / folder / f"{name}.json").read_text())
        assert a["test"] == b["test"] and a["valid"] == b["valid"], name
    for out in ("results/report/results.csv", "results/report/summary.json", "results/report/plots/bars_tgt.png"):
        assert (cluster / out).is_file(), out
