"""`transrec recommend` and `transrec add-items` (the work is in transrec.recommend; importing this
module costs no torch, so the other commands start fast)."""
from __future__ import annotations


def _recommend(args) -> None:
    import json

    from transrec import params as P
    from transrec.errors import TransrecError
    from transrec.model.checkpoint import model_folder
    from transrec.recommend import added_path, catalogue, load, top_k
    from transrec.runtime import local_device

    params = P.load(args.params)
    device = local_device(params["train"])
    net, data, payload = load(params, args.model, args.platform, device)
    cat = catalogue(net, data, added_path(args.model, args.platform))
    keys = [k.strip() for k in args.history.split(",") if k.strip()]
    if not keys:
        raise TransrecError("--history is empty: give item keys separated by commas")
    recs = top_k(net, cat, cat.index(keys), args.k, exclude_history=not args.keep_history)
    if args.json:
        print(json.dumps({"model": str(model_folder(args.model)), "trained_on": payload.get("platform"),
                          "platform": args.platform, "history": keys, "recommendations": recs}, indent=1))
        return
    mode = "" if payload.get("platform") == args.platform else f" (zero-shot: trained on {payload.get('platform')})"
    print(f"top {len(recs)} of {int(cat.rankable.sum())} items on {args.platform}{mode} for {len(keys)} history items:")
    for r in recs:
        print(f"{r['rank']:>3}  {r['score']:>8.4f}  {r['key']:<24} {r['modality']:<6} {r['title'][:60]}"
              + ("  [new]" if r["new"] else ""))


def _add_items(args) -> None:
    from pathlib import Path

    from transrec import params as P
    from transrec.recommend import add_items

    params = P.load(args.params)
    out = add_items(params, args.model, args.platform, Path(args.items))
    print(f"add-items: {out['items']} read, {out['text']} text, {out['image']} image, {out['both']} both, "
          f"{out['image_unreadable_text_kept']} kept as text (image unreadable), {out['dropped']} dropped; "
          f"{out['stored']} added items on {args.platform} -> {out['file']}")


def _export(args) -> None:
    from pathlib import Path

    from transrec import params as P
    from transrec.export import export
    from transrec.runtime import local_device

    params = P.load(args.params)
    device = local_device(params["train"])
    out = export(params, args.model, args.platform, args.k, Path(args.users) if args.users else None, device)
    print(f"export: top {out['k']} of {out['items']} items ({out['added_items']} added) for {out['users']} users of "
          f"{args.platform} -> {out['file']}")


def add_commands(sub, common) -> None:
    p = sub.add_parser("recommend", parents=[common], help="top-K items for a history of item keys")
    p.add_argument("--model", required=True, help="a model folder (or a run's folder)")
    p.add_argument("--platform", required=True, help="platform whose items to rank (another one: zero-shot)")
    p.add_argument("--history", required=True, help="item keys, oldest first, separated by commas")
    p.add_argument("--k", type=int, default=10, help="how many items (default 10)")
    p.add_argument("--keep-history", action="store_true", help="allow the history's own items in the list")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_recommend)
    p = sub.add_parser("add-items", parents=[common], help="encode new items (no retraining) so recommend ranks them")
    p.add_argument("--model", required=True, help="a content model's folder (or its run's folder)")
    p.add_argument("--platform", required=True, help="the platform the items join")
    p.add_argument("--items", required=True, help="CSV or parquet: key, and text/title and/or image (path), [modality]")
    p.set_defaults(func=_add_items)
    p = sub.add_parser("export", parents=[common], help="top-K recommendations of every user to parquet")
    p.add_argument("--model", required=True, help="a model folder (or a run's folder)")
    p.add_argument("--platform", required=True, help="platform whose users and items (another one: zero-shot)")
    p.add_argument("--k", type=int, default=100, help="items per user (default 100)")
    p.add_argument("--users", default=None, help="a file of user keys, one per line (default: every user)")
    p.set_defaults(func=_export)
