"""One workflow run per folder: `snakemake` holds an flock on .snakemake/transrec.lock while it runs, so a
second run in the same folder is refused in one line. Snakemake's own lock files say so in a page and,
left behind by a killed run, refuse every later run until `--unlock`; an flock dies with its process, so
whoever holds it knows that Snakemake's lock files are stale and removes them: a killed run simply
resumes when started again."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from transrec.errors import TransrecError

# Snakemake invocations that run no job: they neither need the run lock nor are refused by it.
NOT_RUNNING = {"-n", "--dry-run", "--dryrun", "--lint", "--rulegraph", "--dag", "--filegraph", "--d3dag", "--report",
               "--unlock", "--list", "-l", "--list-rules", "--list-target-rules", "--summary", "-S",
               "--detailed-summary", "-D", "--cleanup-metadata", "--list-changes", "--lc", "--containerize",
               "--print-compilation", "--export-cwl", "--archive", "--delete-all-output", "--delete-temp-output"}


def runs_jobs(argv: list[str], dryrun: bool = False) -> bool:
    """Whether this snakemake invocation executes jobs (Snakemake only knows once the Snakefile is read)."""
    flags = {a.split("=", 1)[0] for a in argv[1:] if a.startswith("-")}
    return not dryrun and not (flags & NOT_RUNNING)


def hold(folder: str | os.PathLike = ".snakemake"):
    """Take the folder's run lock for the life of this process (keep the returned file open)."""
    path = Path(folder) / "transrec.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")  # noqa: SIM115 (held until the process exits)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        owner = fh.read().strip() or "?"
        fh.close()
        raise TransrecError(f"another snakemake (pid {owner}) is running in {Path.cwd()}; wait for it or stop it, "
                            "then run again") from None
    fh.seek(0), fh.truncate(), fh.write(f"{os.getpid()}\n"), fh.flush()
    for stale in (Path(folder) / "locks").glob("*.lock"):  # no other run is alive here: a killed run's
        stale.unlink(missing_ok=True)
    return fh
