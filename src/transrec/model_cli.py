"""`transrec convert-model` (a pickled best.pt of an older transrec -> a model folder, read with torch's
weights-only loader) and `transrec push-model` (a model folder -> the Hugging Face hub; needs the network).
Importing this module costs no torch."""
from __future__ import annotations

from pathlib import Path


def _convert(args) -> None:
    import torch

    from transrec import params as P
    from transrec.errors import TransrecError, first_line
    from transrec.model import card
    from transrec.model import checkpoint as ckpt
    from transrec.paths import MODEL_CONFIG, processed_dir

    source, out = Path(args.checkpoint), Path(args.output)
    if not source.is_file():
        raise TransrecError(f"{source} not found")
    if (out / MODEL_CONFIG).exists():
        raise TransrecError(f"{out} already holds a model folder; choose another output")
    try:  # torch's restricted unpickler: tensors, dicts, lists, numbers and strings only; nothing else runs
        old = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = first_line(exc)
        raise TransrecError(f"{source}: not converted, its pickle holds more than weights ({type(exc).__name__}: "
                            f"{first[:200]})") from None
    if not isinstance(old, dict) or old.get("format") != 1 or "kind" not in old or "state" not in old:
        raise TransrecError(f"{source} is not a transrec best.pt (format 1 with kind and state)")
    params = P.load(args.params)
    proc = processed_dir(params, old["platform"])
    catalogue = ckpt.catalogue_hash(proc) if (proc / "catalog.parquet").is_file() else None
    header = {k: old.get(k) for k in ("kind", "model_config", "n_items", "image_size", "items_frozen", "platform",
                                      "setting", "step", "epoch", "valid")}
    ckpt.save_weights(out, {k: v.contiguous() for k, v in old["state"].items()},
                      {**header, "run": old.get("setting"), "catalogue": catalogue})
    config = ckpt.write_config(out, {"converted_from": str(source), "metrics": {"valid": old.get("valid")},
                                     "encoders": None})  # the encoders' weight files were not recorded then
    card.write(out, config, proc)
    print(f"convert-model: {source} -> {out} ({len(old['state'])} tensors; catalogue "
          f"{catalogue or 'unknown: ' + str(proc) + ' not found'})")


def _push(args) -> None:
    from huggingface_hub import HfApi

    from transrec.errors import TransrecError, first_line
    from transrec.model import checkpoint as ckpt

    folder = ckpt.model_folder(args.model)
    ckpt.read(folder)  # only a complete, readable model folder goes out
    try:
        api = HfApi()
        api.create_repo(args.repo, repo_type="model", private=args.private, exist_ok=True)
        info = api.upload_folder(repo_id=args.repo, folder_path=str(folder), repo_type="model",
                                 commit_message=f"transrec model folder {folder}")
    except Exception as exc:
        first = first_line(exc)
        raise TransrecError(f"push-model {args.repo}: {type(exc).__name__}: {first}") from None
    print(f"push-model: {folder} -> {info}; load it with --model {ckpt.HUB}{args.repo}")


def add_commands(sub, common) -> None:
    p = sub.add_parser("convert-model", parents=[common],
                       help="turn an older transrec's best.pt into a model folder (weights-only loader)")
    p.add_argument("checkpoint", help="the best.pt")
    p.add_argument("output", help="the model folder to write")
    p.set_defaults(func=_convert)
    p = sub.add_parser("push-model", help="upload a model folder to the Hugging Face hub (needs the network)")
    p.add_argument("model", help="a model folder (or a run's folder)")
    p.add_argument("repo", help="owner/name on the hub")
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=_push)
