"""`transrec <step>`: one command per pipeline step. Snakemake rules and DVC stages call exactly these.

Every user-facing problem (bad params, missing files, bad data) ends as one line on stderr and exit
code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from transrec.errors import TransrecError
from transrec.paths import IMAGE_INDEX, INTERACTIONS, ITEMS, MANIFEST, TEXT_IDS


def _platform_step(args, step: str) -> None:
    from transrec import params as P
    from transrec import paths

    params = P.load(args.params)
    cfg = P.platform_config(params, args.platform)
    raw_dir, proc = paths.platform_dirs(params, args.platform)
    if step == "download":
        from transrec.data.locate import locate

        manifest = locate(cfg, raw_dir, params.get("synthetic_world", {}))
        print(f"{args.platform}: raw files at {manifest['root']}")
    elif step == "clean":
        import json

        from transrec.data.clean import clean

        manifest_path = raw_dir / MANIFEST
        if not manifest_path.is_file():
            raise TransrecError(f"{manifest_path} not found: run `transrec download {args.platform}` first")
        root = Path(json.loads(manifest_path.read_text())["root"])
        if not root.is_dir():
            raise TransrecError(f"data folder {root} (from {manifest_path}) no longer exists; run download again")
        stats = clean(cfg, root, proc, params["seed"])
        i = stats["interactions"]
        print(f"{args.platform}: {i['kept']} of {i['read']} interactions kept, {stats['users']['kept']} users, "
              f"{stats['items']['kept']} items; dropped {sum(i['dropped'].values())}, quarantined {i['quarantined']}")
    elif step == "resize":
        from transrec.data.images import default_workers, resize

        stats = resize(_need(proc / ITEMS, "clean", args.platform), proc, cfg["image"]["size"],
                       args.workers or default_workers())
        print(f"{args.platform}: {stats['ok']} of {stats['requested']} images ok "
              f"({stats['corrupt']} corrupt, {stats['missing']} missing)")
    elif step == "tokenize":
        from transrec.data.text import tokenize

        stats = tokenize(_need(proc / ITEMS, "clean", args.platform), proc, cfg["text"]["tokenizer"],
                         cfg["text"]["max_len"])
        print(f"{args.platform}: {stats['items']} texts tokenized ({stats['empty_text']} empty, "
              f"{stats['truncated']} truncated)")
    elif step == "split":
        from transrec.data.split import split

        # the earliest missing step is the one to run (split before clean names clean, not resize)
        for needed, by in ((INTERACTIONS, "clean"), (IMAGE_INDEX, "resize"),
                           (TEXT_IDS, "tokenize")):
            _need(proc / needed, by, args.platform)
        stats = split(proc)
        print(f"{args.platform}: {stats['split']['users']} users split leave-one-out; catalog {stats['split']['catalog']}")


def _pool(args) -> None:
    from transrec import params as P
    from transrec import paths, study
    from transrec.data.pool import pool

    params = P.load(args.params)
    members = study.pooled(params)
    if not members:
        raise TransrecError("transrec pool: study.source names one platform (or none); pooling needs several")
    name = study.source(params)
    stats = pool(paths.processed_dir(params, name), {m: paths.processed_dir(params, m) for m in members})
    print(f"{name}: {stats['users']} users, {stats['items']} items, {stats['interactions']} interactions pooled from "
          + ", ".join(f"{m} ({s['users']} users)" for m, s in stats["members"].items()))


def _need(path: Path, step: str, platform: str) -> Path:
    if not path.exists():
        raise TransrecError(f"{path} not found: run `transrec {step} {platform}` first")
    return path


def _validate(args) -> None:
    from transrec import jobs
    from transrec import params as P

    params = P.load(args.params)
    table = jobs.check(params)
    if args.show:  # a profile is an overlay: this is the whole study it runs (stdout: a params file of its own)
        import yaml

        print(yaml.safe_dump(params, sort_keys=False), end="")
    print(f"{args.params}: valid ({len(params['platforms'])} platforms: {', '.join(params['platforms'])}; "
          f"{len(table)} jobs)", file=sys.stderr if args.show else sys.stdout)


def _report(args) -> None:
    from pathlib import Path

    from transrec import params as P
    from transrec.report.build import build

    params = P.load(args.params)
    if "evaluate" not in params or "study" not in params:
        raise TransrecError("params: the report needs the evaluate section (its metrics are evaluate.ks) and the "
                            "study section")
    out = build(Path(params["paths"]["results"]), params["evaluate"]["ks"], params["study"]["scaling"]["target"])
    if "wandb" in params:
        from transrec.report.build import log_to_wandb

        log_to_wandb(params, out)
    print(out["markdown"])
    print(f"report: {len(out['rows'])} rows, {len(out['plots'])} plots -> {params['paths']['results']}/report/")
    if args.readme:
        from transrec.report.build import update_readme

        # params.yaml fills the `results` block; a profile (profiles/NAME.yaml) fills the `NAME` block
        block = "results" if Path(args.params).name == "params.yaml" else Path(args.params).stem
        figures = update_readme(Path(args.readme), Path(params["paths"]["results"]), out, block)
        print(f"report: {args.readme} updated ({len(figures)} figures in docs/figures)")


def _readme_block(args) -> None:
    from transrec.report.build import replace_block

    body = sys.stdin.read()
    if not body.strip():
        raise TransrecError(f"readme-block {args.block}: nothing on stdin (did the command before the pipe fail?)")
    if args.code is not None:
        body = f"```{args.code}\n{body.rstrip()}\n```"
    if args.details:
        body = f"<details><summary>{args.details}</summary>\n\n{body}\n\n</details>"
    replace_block(Path(args.readme), args.block, body)
    print(f"{args.readme}: block {args.block} filled ({len(body.splitlines())} lines)")


def _dvc_yaml(args) -> None:
    from transrec import jobs, study
    from transrec import params as P
    from transrec.atomic import atomic_path

    params = P.load(args.params)
    study.check(params)
    path = Path(args.output)
    if args.check:
        stale = jobs.check_dvc_yaml(params, path)
        if stale:
            raise TransrecError(f"stale: {stale}; run `transrec dvc-yaml` to write it from the job table")
        print(f"{path}: up to date with the job table and {args.params}")
        return
    with atomic_path(path) as tmp:
        tmp.write_text(jobs.dvc_yaml(params))
    print(f"{path}: {len(jobs.jobs(params))} stages written from the job table and {args.params}")


def _gpu_run(args) -> None:
    from transrec.gpu_slots import gpu_run

    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    raise SystemExit(gpu_run(args.gpus, command))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transrec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="STEP")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default=os.environ.get("TRANSREC_PARAMS", "params.yaml"),
                        help="parameter file (default: $TRANSREC_PARAMS, else params.yaml)")

    p = sub.add_parser("validate", parents=[common], help="check params.yaml against the schema")
    p.add_argument("--show", action="store_true", help="also print the parameters in full (a profile merged "
                   "onto the file it extends)")
    p.set_defaults(func=_validate)
    helps = {
        "download": "generate (synthetic), locate or download a platform's raw files",
        "clean": "parse, quarantine, de-duplicate, order, filter and index a platform",
        "resize": "decode, resize and store a platform's images as one uint8 array",
        "tokenize": "tokenize a platform's item texts to fixed-length int arrays",
        "split": "leave-one-out split, final catalogue and stats.json",
    }
    for step, text in helps.items():
        p = sub.add_parser(step, parents=[common], help=text)
        p.add_argument("platform", help="platform name from params.yaml")
        if step == "resize":
            p.add_argument("--workers", type=int, default=0, help="decoding processes (default: CPUs, max 8)")
        p.set_defaults(func=lambda a, s=step: _platform_step(a, s))
    p = sub.add_parser("pool", parents=[common], help="the platforms study.source names, pooled into one "
                       "processed platform for pre-training")
    p.set_defaults(func=_pool)
    p = sub.add_parser("report", parents=[common], help="tables, transfer gains and plots from every metrics file")
    p.add_argument("--readme", default=None, help="also fill this markdown file's block (`results` for params.yaml, "
                   "else the profile's name; make readme)")
    p.set_defaults(func=_report)
    p = sub.add_parser("readme-block", help="fill a README block (<!-- NAME:begin/end -->) with stdin (make readme)")
    p.add_argument("block", help="the block's name")
    p.add_argument("--readme", default="README.md")
    p.add_argument("--code", default=None, help="wrap in a fenced code block of this language ('' for none)")
    p.add_argument("--details", default=None, help="fold it under this summary line")
    p.set_defaults(func=_readme_block)
    p = sub.add_parser("dvc-yaml", parents=[common], help="write dvc.yaml from the job table (transrec.jobs)")
    p.add_argument("--check", action="store_true", help="only check: exit 2 naming the first stale line")
    p.add_argument("--output", default="dvc.yaml", help="the file (default: dvc.yaml)")
    p.set_defaults(func=_dvc_yaml)
    p = sub.add_parser("gpu-run", help="run a command on N GPU slots of its own (CUDA_VISIBLE_DEVICES)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs this job needs (0: run as is)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- command to run")
    p.set_defaults(func=_gpu_run)
    __import__("transrec.train.cli", fromlist=["add_commands"]).add_commands(sub, common)  # cache/pretrain/transfer/evaluate
    __import__("transrec.recommend_cli", fromlist=["add_commands"]).add_commands(sub, common)  # recommend/add-items
    __import__("transrec.model_cli", fromlist=["add_commands"]).add_commands(sub, common)  # convert-model/push-model
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except TransrecError as exc:
        print(f"transrec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"transrec {args.command}: interrupted; outputs are written atomically, rerun to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
