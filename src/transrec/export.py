"""Top-K export: every user's next-item recommendations as one parquet file, for whatever serves them.

    transrec export --model M --platform P [--k 100] [--users FILE]
        -> {paths.results}/recommendations/<P>/<run>.parquet   (user, rank, item, score)

A user's history is their whole known sequence (train + validation + test items, the last max_len as
input); their own items are never recommended. Items added with `add-items` are ranked with the
catalogue. Users are scored in chunks (evaluate.chunk_users) against the catalogue encoded once, and each
chunk's rows go to a part file that is streamed into the output at the end, so memory stays at one
chunk x catalogue of scores whatever the number of users. An ID model on another platform is refused
(recommend.load). --users: a file of user keys, one per line (others are not exported).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from transrec.atomic import atomic_path
from transrec.errors import TransrecError
from transrec.model.checkpoint import model_folder
from transrec.paths import MODEL_DIR, USERS, recommendations_file
from transrec.recommend import added_path, catalogue, load


def output_file(params: dict, model: str | Path, platform: str) -> Path:
    """Named after the run (a run's model/ folder) or the model folder itself."""
    folder = model_folder(model)
    return recommendations_file(params, platform, folder.parent.name if folder.name == MODEL_DIR else folder.name)


def _histories(data) -> tuple[np.ndarray, np.ndarray]:
    """CSR (offsets, items) of every user's whole sequence: train + valid + test."""
    lengths = data.train.lengths() + 2
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.empty(offsets[-1], dtype=np.int64)
    for u in range(len(lengths)):  # one pass in numpy would need the same three pieces per user anyway
        a = offsets[u]
        seq = data.train.get(u)
        items[a:a + len(seq)] = seq
        items[a + len(seq)], items[a + len(seq) + 1] = data.valid[u], data.test[u]
    return offsets, items


def _selected_users(data, users_file: Path | None) -> tuple[np.ndarray, list[str]]:
    keys = pl.read_parquet(data.proc / USERS).sort("user")
    key_of = dict(zip(keys["user"].to_list(), keys["key"].to_list()))
    rows = np.arange(len(data.users))
    names = [str(key_of[u]) for u in data.users.tolist()]
    if users_file is None:
        return rows, names
    if not users_file.is_file():
        raise TransrecError(f"--users {users_file}: no such file")
    wanted = [line.strip() for line in users_file.read_text().splitlines() if line.strip()]
    where = {k: i for i, k in enumerate(names)}
    unknown = [k for k in wanted if k not in where]
    if unknown:
        raise TransrecError(f"--users {users_file}: {len(unknown)} of {len(wanted)} user keys are not users of "
                            f"{data.name}: {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}")
    picked = np.array([where[k] for k in wanted], dtype=np.int64)
    return picked, [names[i] for i in picked]


@torch.no_grad()
def export(params: dict, model: str | Path, platform: str, k: int = 100, users_file: Path | None = None,
           device="cpu", progress: bool = True) -> dict:
    if k < 1:
        raise TransrecError(f"--k {k}: give at least 1")
    net, data, payload = load(params, model, platform, device)
    cat = catalogue(net, data, added_path(model, platform))
    k = min(k, int(cat.rankable.sum()))
    offsets, items = _histories(data)
    rows, names = _selected_users(data, users_file)
    n = net.cfg.user_encoder.max_len
    chunk = int(params["evaluate"]["chunk_users"])
    out = output_file(params, model, platform)
    with atomic_path(out, ".parquet") as tmp, tempfile.TemporaryDirectory(dir=out.parent) as parts_dir:
        parts = []
        for start in tqdm(range(0, len(rows), chunk), desc=f"export {platform}", unit="chunk", disable=not progress):
            users = rows[start:start + chunk]
            hist = torch.full((len(users), n), -1, dtype=torch.long)
            masked_rows, masked_cols = [], []
            for b, u in enumerate(users):
                seq = items[offsets[u]:offsets[u + 1]]
                recent = seq[-n:]
                hist[b, n - len(recent):] = torch.from_numpy(recent)
                masked_rows.append(np.full(len(seq), b)), masked_cols.append(seq)
            scores = net.user_vectors(hist.to(cat.vectors.device), cat.vectors) @ cat.vectors.T
            scores.masked_fill_(~cat.rankable.to(scores.device)[None], float("-inf"))
            scores[torch.from_numpy(np.concatenate(masked_rows)), torch.from_numpy(np.concatenate(masked_cols))] = \
                float("-inf")  # the user's own items
            best = min(k, scores.shape[1])
            values, top = scores.topk(best, dim=1)
            finite = torch.isfinite(values)
            frame = pl.DataFrame({
                "user": np.repeat(np.array(names[start:start + len(users)], dtype=object), best)[finite.flatten().numpy()],
                "rank": np.tile(np.arange(1, best + 1, dtype=np.int32), len(users))[finite.flatten().numpy()],
                "item": np.array(cat.keys, dtype=object)[top.flatten().numpy()][finite.flatten().numpy()],
                "score": values.flatten()[finite.flatten()].float().numpy(),
            }, schema={"user": pl.String, "rank": pl.Int32, "item": pl.String, "score": pl.Float32})
            part = Path(parts_dir) / f"{len(parts):06d}.parquet"
            frame.write_parquet(part)
            parts.append(part)
        if parts:
            pl.scan_parquet(parts).sink_parquet(tmp)
        else:
            pl.DataFrame(schema={"user": pl.String, "rank": pl.Int32, "item": pl.String, "score": pl.Float32}
                         ).write_parquet(tmp)
    return {"file": str(out), "users": int(len(rows)), "k": int(k), "items": int(cat.rankable.sum()),
            "added_items": len(cat.keys) - cat.n_catalogue, "trained_on": payload.get("platform")}
