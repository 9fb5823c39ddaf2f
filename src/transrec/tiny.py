"""A tiny world for tests, smoke runs and benchmarks (transformers-style tiny configs).

    tiny_bert(folder)             a random 2-layer BERT (hidden 32) saved with save_pretrained, with the
                                  MiniLM tokenizer files, so it tokenizes like the default model
    tiny_params(root, base, bert) a params dict for two small synthetic platforms (source `src`,
                                  target `tgt`), 16-px images, a 2-layer user encoder of width 32;
                                  written to root/params.yaml
    build_platforms(path, names)  the real data steps (download .. split) for those platforms
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import yaml

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def tiny_bert(folder: str | Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    from transrec.data.text import minilm_path

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (minilm_path() / name).is_file():
            shutil.copy(minilm_path() / name, folder / name)
    return folder


def tiny_params(root: str | Path, base: dict, bert: str | Path, **sections) -> dict:
    """The project's params (`base`) shrunk to seconds; `sections` override top-level sections key by key."""
    root = Path(root)
    p = copy.deepcopy(base)
    p["paths"] = {"data": str(root / "data"), "results": str(root / "results")}
    p["data"]["image"]["size"] = 16
    p["data"]["text"] = {"tokenizer": str(bert), "max_len": 12}
    p["data"]["filter"]["min_user_len"] = 5
    history = [5, 12]
    p["platforms"] = {
        "src": {"adapter": "synthetic", "role": "source",
                "synthetic": {"seed": 11, "n_users": 60, "n_items": 50, "text_fraction": 0.5, "history": history,
                              "domain_shift": 0.0}},
        "tgt": {"adapter": "synthetic", "role": "target",
                "synthetic": {"seed": 12, "n_users": 40, "n_items": 40, "text_fraction": 0.5, "history": history,
                              "domain_shift": 0.3}},
    }
    p["model"].update({"d": 32, "n_negatives": 8})
    p["model"]["user_encoder"].update({"layers": 2, "heads": 2, "hidden": 32, "max_len": 8})
    p["model"]["item_tower"] = "heads"  # the tiny world trains the encoders' top blocks (test_side: the side tower)
    p["model"]["text_encoder"].update({"name": str(bert), "trainable_blocks": 1})
    p["model"]["image_encoder"].update({"name": "efficientnet-lite0", "trainable_blocks": 1, "pretrained": True})
    p["train"].update({"batch_size": 16, "epochs": 2, "patience": 2, "min_steps": 0, "warmup_steps": 0, "num_threads": 1,
                       "device": "cpu", "pretrain": {"epochs": 2}})
    p["evaluate"]["chunk_users"] = 16
    p["study"] = {"source": "src", "targets": ["tgt"],  # no scaling runs unless a test asks for them
                  "scaling": {"target": "tgt", "settings": [], "source_fractions": [], "target_fractions": [],
                              "seeds": []}}
    p["wandb"]["mode"] = "disabled"
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(p.get(section), dict):
            for key, value in values.items():
                if isinstance(value, dict) and isinstance(p[section].get(key), dict):
                    p[section][key].update(value)
                else:
                    p[section][key] = value
        else:
            p[section] = values
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return p


def build_platforms(params_path: str | Path, names=("src", "tgt")) -> None:
    from transrec.cli import main

    for name in names:
        for step in ("download", "clean", "resize", "tokenize", "split"):
            code = main([step, name, "--params", str(params_path)])
            if code != 0:
                raise RuntimeError(f"transrec {step} {name} failed with exit code {code}")


def tiny_world(root: str | Path, base: dict) -> dict:
    """Tiny BERT + params + processed `src` and `tgt` platforms under root, built once (a marker file)."""
    root = Path(root)
    bert = tiny_bert(root / "bert")
    params = tiny_params(root, base, bert)
    if not (root / ".built").is_file():
        build_platforms(root / "params.yaml")
        (root / ".built").touch()
    return params


def with_results(params: dict, results: str | Path, path: str | Path | None = None, **sections) -> dict:
    """A copy of tiny params writing results elsewhere (and overriding sections); saved to `path` if given."""
    p = copy.deepcopy(params)
    p["paths"]["results"] = str(results)
    for section, values in sections.items():
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(p[section].get(key), dict):
                p[section][key].update(value)
            else:
                p[section][key] = value
    if path is not None:
        Path(path).write_text(yaml.safe_dump(p, sort_keys=False))
    return p
