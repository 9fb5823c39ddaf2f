"""GPU slot allocator: concurrent gpu=1 jobs on a fake 4-device pool get 4 different devices."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from conftest import BIN, run

REPORT = "import os, time; time.sleep(1.5); print(os.environ.get('CUDA_VISIBLE_DEVICES'))"


def _start(tmp_path, gpus: int):
    env = {**os.environ, "TRANSREC_GPU_COUNT": "4", "TRANSREC_GPU_LOCK_DIR": str(tmp_path / "locks"),
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen([str(BIN / "transrec"), "gpu-run", "--gpus", str(gpus), "--", sys.executable, "-c", REPORT],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_four_concurrent_jobs_get_four_devices_and_a_fifth_waits(tmp_path):
    start = time.monotonic()
    jobs = [_start(tmp_path, 1) for _ in range(5)]
    outs = [j.communicate(timeout=60)[0].strip() for j in jobs]
    assert all(j.returncode == 0 for j in jobs)
    assert sorted(set(outs)) == ["0", "1", "2", "3"]
    assert len(outs) == 5  # the fifth ran after a slot came free
    assert time.monotonic() - start >= 3.0  # two rounds of 1.5 s: it did wait, it did not share a device


def test_multi_gpu_job_gets_distinct_devices(tmp_path):
    a, b = _start(tmp_path, 2), _start(tmp_path, 2)
    devs = [set(p.communicate(timeout=60)[0].strip().split(",")) for p in (a, b)]
    assert all(len(d) == 2 for d in devs) and not devs[0] & devs[1]


def test_without_gpus_the_command_runs_as_is(tmp_path):
    env = {**os.environ, "TRANSREC_GPU_COUNT": "0", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    out = subprocess.run([str(BIN / "transrec"), "gpu-run", "--gpus", "1", "--", sys.executable, "-c",
                          "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'))"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "None"


def test_snakemake_gpu_jobs_land_on_different_devices(tmp_path):
    """Four gpu=1 rules run at once under `--resources gpu=4`: each sees its own device."""
    (tmp_path / "Snakefile").write_text(textwrap.dedent(f"""
        rule all:
            input: expand("dev/{{i}}.txt", i=range(4))
        rule job:
            output: "dev/{{i}}.txt"
            resources: gpu=1
            shell: "transrec gpu-run --gpus {{resources.gpu}} -- {sys.executable} -c \\"{REPORT}\\" > {{output}}"
    """))
    env_prefix = ["env", "TRANSREC_GPU_COUNT=4", f"TRANSREC_GPU_LOCK_DIR={tmp_path / 'locks'}"]
    run(env_prefix + [str(BIN / "snakemake"), "--cores", "4", "--resources", "gpu=4", "--quiet"], tmp_path)
    devices = sorted((tmp_path / "dev" / f"{i}.txt").read_text().strip() for i in range(4))
    assert devices == ["0", "1", "2", "3"]
