"""The model card (README.md of a model folder): what the model is, the data and protocol it was measured
with, its metrics, how to load it, and what it is not for. Written from config.json and the platform's
stats.json when a run finishes; the YAML front matter is the hub's (huggingface_hub.ModelCardData), so a
pushed folder shows up as a transrec model with its tags."""
from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from transrec.atomic import atomic_path
from transrec.paths import MODEL_CARD, STATS
from transrec.transfer_settings import setting


def _stop_text(training: dict) -> str:
    reason = training.get("stop_reason", "not trained")
    if reason == "not trained":
        return "not trained on this platform"
    text = "stopped early (patience)" if reason == "patience" else f"ended at its {reason}"
    if training.get("still_improving"):
        text += " with its best step in the last 10% of it: still improving, not converged"
    return text


def _summary(name: str) -> str:
    record = setting(name)
    return record.summary if record else name


def _metrics_table(metrics: dict) -> list[str]:
    splits = [s for s in ("valid", "test") if metrics.get(s)]
    if not splits:
        return ["No metrics recorded."]
    names = list(metrics[splits[0]])
    rows = ["| split | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    rows += [f"| {s} | " + " | ".join(f"{metrics[s][n]:.4f}" for n in names) + " |" for s in splits]
    return rows


def render(config: dict, stats: dict) -> str:
    """The card's markdown for a model's config.json and its platform's processed stats.json."""
    cfg, kind, platform = config["model_config"], config["kind"], config["platform"]
    clean, split = stats.get("clean", {}), stats.get("split", {})
    modality = ", ".join(f"{n:,} {m}" for m, n in (split.get("catalog") or {}).items())
    protocol = config.get("protocol") or {}
    tags = ["recommendation", "sequential-recommendation", "transrec", f"setting-{config['setting']}", kind]
    data = ModelCardData(library_name="transrec", tags=tags)
    if kind == "content":
        tower = (f"item tower `{cfg['item_tower']}` over the frozen encoders {cfg['text_encoder']['name']} (text) and "
                 f"{cfg['image_encoder']['name']} (images)")
    else:
        tower = f"an item-ID table of {config.get('n_items'):,} rows (this platform's items only)"
    stop = _stop_text(config.get("training") or {})
    lines = [
        f"# transrec {kind} model: {platform} / {config['setting']}",
        "",
        f"A sequential recommender ({cfg['user_encoder']['mode']} transformer user encoder, d = {cfg['d']}, "
        f"{cfg['user_encoder']['layers']} layers, the last {cfg['user_encoder']['max_len']} items of a history) with "
        f"{tower}: {_summary(config['setting'])}. "
        f"{config.get('trainable_parameters', 0):,} parameters trained; best checkpoint at step {config['step']} "
        f"(epoch {config['epoch']}), {stop}.",
        "",
        "## Data",
        "",
        f"Platform `{platform}` (adapter `{clean.get('adapter', '?')}`): {split.get('users', 0):,} users, "
        f"{split.get('interactions', 0):,} interactions, items: {modality or '?'}; history length mean "
        f"{(split.get('sequence_length') or {}).get('mean', '?')}. Catalogue fingerprint "
        f"`{config.get('catalogue')}` (the item keys in order).",
        "",
        "## Protocol and metrics",
        "",
        f"{protocol.get('split', 'leave-one-out')} split (validation: the second-to-last item, test: the last), "
        f"{protocol.get('ranking', 'full catalogue')} ranking over every item, the user's history "
        f"{'masked' if protocol.get('mask_history', True) else 'not masked'}, ties {protocol.get('ties', 'pessimistic')} "
        "(a target tied with other items ranks below them).",
        "",
        *_metrics_table(config.get("metrics") or {}),
        "",
        "## How to load",
        "",
        "```bash",
        "pip install -e .   # in a checkout of the transrec repository",
        f"transrec recommend --model <this folder> --platform {platform} --history KEY1,KEY2 --k 10",
        "# a content model also ranks another platform's items (zero-shot) and takes new items:",
        "transrec add-items --model <this folder> --platform P --items new.csv",
        "```",
        "",
        "Python: `transrec.model.checkpoint.read(folder)` returns the config and the weights (safetensors; "
        "nothing in the folder is executed); `transrec.model.build.load_trained` attaches a platform's items.",
        "",
        "## Intended use and limits",
        "",
        "- Research on transferable sequential recommendation: a baseline, an initialisation for another "
        "platform's training, or a zero-shot ranker of another platform's items (content models).",
        "- An ID model only knows its own platform's items; it refuses any other catalogue.",
        "- A content model reads items through the frozen pretrained encoders named above; loading checks the "
        "local encoder weights against the hashes in config.json and refuses different ones.",
        "- The metrics hold for this platform's leave-one-out test users; they are not a promise for another "
        "population. The data's biases (popularity, who reviews or rates) are the model's.",
        "- Not for decisions about people: it ranks items from interaction histories only.",
        "",
    ]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n" + "\n".join(lines)))


def write(folder: str | Path, config: dict, proc: str | Path) -> None:
    """README.md of a model folder; `proc` is the processed folder of the model's platform (its stats.json)."""
    stats = Path(proc) / STATS
    with atomic_path(Path(folder) / MODEL_CARD) as tmp:
        tmp.write_text(render(config, json.loads(stats.read_text()) if stats.is_file() else {}))
