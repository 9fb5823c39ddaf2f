"""The embedded default: a seeded world of mixture-of-modality platforms.

One *world* (synthetic_world in params) fixes the semantics every platform shares: topics with real
English word lists, a colour palette and shapes per topic, and how a user's interest moves from topic
to topic. Each *platform* (its own seed) draws its own users and items from that world, so platforms
share meaning but never a user or an item. What makes the task non-trivial:

- order matters: the next topic depends on the current one (world transitions) and on the user's
  taste, and with some probability the next item is the catalogue "follow-up" of the previous one
  (an ID-level signal content models see only indirectly);
- popularity is skewed (Zipf) inside each topic, so popularity is a real but weak baseline;
- content carries the topic: words for text items, palette and shape for image items, so a content
  encoder can recognise a new platform's items without ever having seen them;
- domain_shift moves a platform's topic mix, blends in generic words and restyles its images.

The generator writes the generic csv layout (interactions.csv, items.csv, images/<key>.jpg), so the
synthetic platforms go through exactly the same parsing and cleaning code as a user's own export.
"""
from __future__ import annotations

import csv
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from transrec.atomic import atomic_path

TOPICS: dict[str, list[str]] = {
    "sports": "football goal striker league match referee stadium tennis racket serve marathon sprint coach trophy season playoff".split(),
    "cooking": "recipe oven garlic pasta sauce bake bread flour spice grill soup dessert chocolate kitchen butter roast".split(),
    "music": "guitar album concert melody chorus drummer piano jazz vinyl playlist singer rhythm violin orchestra lyrics tour".split(),
    "travel": "beach passport island airport hotel backpack mountain hiking cruise island map journey visa luggage ferry resort".split(),
    "science": "physics atom molecule experiment laboratory theory quantum gene cell telescope fossil climate energy data neuron research".split(),
    "finance": "stock market bond dividend budget savings loan interest investor crypto pension tax inflation bank fund portfolio".split(),
    "fashion": "dress jacket denim sneaker runway silk scarf boots style trend designer cotton blazer handbag knit vintage".split(),
    "pets": "puppy kitten leash aquarium parrot hamster vet grooming collar litter treats breed rabbit tortoise kennel fetch".split(),
    "garden": "tulip seed soil compost orchard hedge rose lawn harvest greenhouse bulb shrub weeding mulch blossom herb".split(),
    "cinema": "director sequel trailer thriller comedy premiere actor scene screenplay horror documentary studio festival drama cast reel".split(),
    "cars": "engine sedan turbo brake tire garage diesel electric hybrid roadtrip gearbox rally convertible dashboard mileage chassis".split(),
    "space": "rocket orbit planet galaxy astronaut comet lunar mars nebula satellite launch crater eclipse asteroid cosmos shuttle".split(),
    "history": "empire castle medieval pharaoh dynasty revolution knight archive treaty ancient ruins battle monarch scroll museum relic".split(),
    "health": "yoga vitamin sleep protein cardio stretch meditation diet immune posture hydration therapy clinic pulse wellness fitness".split(),
    "gaming": "console quest level boss arcade controller multiplayer pixel speedrun dungeon loot avatar esports puzzle strategy sandbox".split(),
    "art": "canvas sculpture sketch gallery portrait watercolor mural brush palette easel ceramic charcoal exhibit mosaic etching collage".split(),
}
GENERIC = "new best guide daily review top ultimate story simple secret weekly classic modern first great".split()
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring", "bars", "dots")
N_SUBTOPICS = 3
RAW_IMAGE_SIZE = 96


class World:
    """The semantics every synthetic platform shares (a pure function of the world seed)."""

    def __init__(self, seed: int, n_topics: int):
        rng = np.random.default_rng(seed)
        names = sorted(TOPICS)
        self.topics = [names[i] for i in rng.permutation(len(names))[:n_topics]]
        self.n_topics = n_topics
        # Words of each (topic, subtopic): the topic's list shuffled and cut into subtopic groups.
        self.words = []
        for t in self.topics:
            words = list(rng.permutation(TOPICS[t]))
            self.words.append([words[s::N_SUBTOPICS] for s in range(N_SUBTOPICS)])
        # Palette per topic (background, foreground RGB) and a shape per subtopic.
        hues = rng.permutation(n_topics) / n_topics
        self.palette = [(_hsv(h, 0.35, 0.95), _hsv((h + 0.5) % 1, 0.85, 0.55)) for h in hues]
        self.shapes = [[SHAPES[(i * N_SUBTOPICS + s) % len(SHAPES)] for s in range(N_SUBTOPICS)]
                       for i in rng.permutation(n_topics)]
        # Interest moves along a sparse topic graph: each topic leads to two others.
        trans = np.full((n_topics, n_topics), 0.02)
        for t in range(n_topics):
            nxt = rng.choice([u for u in range(n_topics) if u != t], size=2, replace=False)
            trans[t, nxt] += [0.6, 0.3]
        self.transitions = trans / trans.sum(1, keepdims=True)


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def _render(world: World, topic: int, sub: int, shift: float, rng: np.random.Generator) -> Image.Image:
    size = RAW_IMAGE_SIZE
    bg, fg = world.palette[topic]
    jitter = rng.integers(-25, 26, size=3)
    bg = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(bg, jitter))
    if shift > 0:  # a shifted platform restyles: darker backgrounds, rotated foreground colours
        bg = tuple(int(c * (1 - 0.6 * shift)) for c in bg)
        fg = (fg[1], fg[2], fg[0]) if shift > 0.5 else fg
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    r = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(r + 4, size - r - 4, size=2))
    box = (cx - r, cy - r, cx + r, cy + r)
    shape = world.shapes[topic][sub]
    if shape == "circle":
        draw.ellipse(box, fill=fg)
    elif shape == "square":
        draw.rectangle(box, fill=fg)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fg)
    elif shape == "cross":
        w = max(3, r // 3)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fg)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fg)
    elif shape == "ring":
        draw.ellipse(box, outline=fg, width=max(3, r // 3))
    elif shape == "bars":
        for k in range(-r, r, max(4, r // 2)):
            draw.rectangle((cx + k, cy - r, cx + k + max(2, r // 4), cy + r), fill=fg)
    else:  # dots
        for _ in range(9):
            x, y = (int(v) for v in rng.integers(4, size - 4, size=2))
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=fg)
    noise = rng.integers(0, 40, size=(size, size, 1), dtype=np.uint8)
    arr = np.clip(np.asarray(img, dtype=np.int16) + noise - 20, 0, 255).astype(np.uint8)
    out = Image.fromarray(arr)
    return out.filter(ImageFilter.GaussianBlur(0.6)) if rng.random() < 0.5 else out


def _title(world: World, topic: int, sub: int, shift: float, rng: np.random.Generator) -> str:
    n_words = int(rng.integers(3, 6))
    own = world.words[topic][sub]
    other = world.words[topic][int(rng.integers(N_SUBTOPICS))]
    words = []
    for _ in range(n_words):
        u = rng.random()
        if u < 0.15 + 0.45 * shift:  # shifted platforms write vaguer titles
            words.append(GENERIC[int(rng.integers(len(GENERIC)))])
        elif u < 0.75:
            words.append(own[int(rng.integers(len(own)))])
        else:
            words.append(other[int(rng.integers(len(other)))])
    return " ".join(words).capitalize()


def _cdf(p: np.ndarray) -> np.ndarray:
    """The cumulative table `Generator.choice(len(p), p=p)` builds internally (same float operations)."""
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    return cdf


def _draw(rng: np.random.Generator, cdf: np.ndarray) -> int:
    """Exactly `rng.choice(len(p), p=p)` for a precomputed `_cdf(p)`: one uniform double, same index.

    choice() re-validates and re-accumulates p on every call; a user draws from the same dozen
    distributions again and again, so caching their tables makes generation several times faster
    while the random stream, and therefore every generated platform, stays bit-identical.
    """
    return int(cdf.searchsorted(rng.random(), side="right"))


# Topics with at most this many items draw from a full cumulative table per user (the original sampler,
# so every platform of that size is generated exactly as before); larger ones use BlockTable.
EXACT_POOL = 4096


class BlockTable:
    """Draws item i of a topic with probability pop_i * taste[sub_i] / sum, in O(n / B + B) per draw.

    The full table costs O(n) per user and topic (its weights depend on the user's subtopic taste):
    at Bili_2M's size (12k items a topic, 2M users) that was 45 min of a 55-min generation. Here the
    per-block sums of popularity by subtopic are computed once, a user's block table is those sums
    weighted by their taste (n / B values), and a draw finds its block there, then its item by the
    cumulative weights inside the block. Same distribution and one uniform per draw, as the full table.
    """

    BLOCK = 128

    def __init__(self, pop: np.ndarray, sub: np.ndarray):
        self.pop, self.sub = pop, sub
        n_blocks = -(-len(pop) // self.BLOCK)
        sums = np.zeros((n_blocks, N_SUBTOPICS))
        np.add.at(sums, (np.arange(len(pop)) // self.BLOCK, sub), pop)
        self.block_sums = sums

    def user_blocks(self, taste: np.ndarray) -> np.ndarray:
        """The cumulative weight of each block for one user's subtopic taste."""
        return np.cumsum(self.block_sums @ taste)

    def draw(self, rng: np.random.Generator, cum: np.ndarray, taste: np.ndarray) -> int:
        target = rng.random() * cum[-1]
        b = min(int(cum.searchsorted(target, side="right")), len(cum) - 1)
        lo = b * self.BLOCK
        inside = np.cumsum(self.pop[lo:lo + self.BLOCK] * taste[self.sub[lo:lo + self.BLOCK]])
        before = cum[b - 1] if b else 0.0
        return lo + min(int(inside.searchsorted(target - before, side="right")), len(inside) - 1)


def _render_items(args: tuple) -> list[str]:
    """Titles of a chunk of items, writing each item's image (runs in a worker process, or inline)."""
    world_cfg, cfg, images, chunk, keys, topics, subs = args
    world = World(world_cfg.get("seed", 7), world_cfg.get("n_topics", 12))
    shift = cfg.get("domain_shift", 0.0)
    titles = []
    for i, key, topic, sub in zip(chunk, keys, topics, subs):
        # Each item's content has its own stream: the catalogue does not depend on rendering order.
        item_rng = np.random.default_rng([world_cfg.get("seed", 7), cfg["seed"], i])
        titles.append(_title(world, topic, sub, shift, item_rng))
        with atomic_path(images / f"{key}.jpg", ".jpg") as img_tmp:
            _render(world, topic, sub, shift, item_rng).save(img_tmp, "JPEG", quality=90)
    return titles


def _workers(n_items: int, workers: int | None) -> int:
    if workers is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = min(8, cpus)
    return workers if n_items >= 2000 else 1  # below that, starting processes costs more than it saves


def generate(out_dir: Path, world_cfg: dict, cfg: dict, key_prefix: str, workers: int | None = None) -> dict:
    """Write one platform in the csv layout under out_dir; return its counts.

    Items are rendered in `workers` processes (default: CPUs, at most 8); the output is the same
    for any number of workers, since every item draws from its own seeded stream.
    """
    world = World(world_cfg.get("seed", 7), world_cfg.get("n_topics", 12))
    rng = np.random.default_rng([world_cfg.get("seed", 7), cfg["seed"]])
    n_users, n_items = cfg["n_users"], cfg["n_items"]
    text_fraction, shift = cfg.get("text_fraction", 0.5), cfg.get("domain_shift", 0.0)
    lo, hi = cfg.get("history", [8, 30])

    # Platform topic mix: uniform for an unshifted platform, concentrated on a few topics when shifted.
    base = np.ones(world.n_topics) / world.n_topics
    skew = rng.dirichlet(np.full(world.n_topics, 0.3))
    topic_mix = (1 - shift) * base + shift * skew
    item_topic = rng.choice(world.n_topics, size=n_items, p=topic_mix)
    item_sub = rng.integers(N_SUBTOPICS, size=n_items)
    item_pop = rng.zipf(1.6, size=n_items).clip(max=200).astype(float)
    is_text = rng.random(n_items) < text_fraction
    keys = [f"{key_prefix}{i:06d}" for i in rng.permutation(n_items)]
    by_topic = [np.flatnonzero(item_topic == t) for t in range(world.n_topics)]
    # The "follow-up" of an item: the next item of the same (topic, subtopic) in catalogue order.
    follow = np.arange(n_items)
    for t in range(world.n_topics):
        for s in range(N_SUBTOPICS):
            group = np.flatnonzero((item_topic == t) & (item_sub == s))
            if len(group) > 1:
                follow[group] = np.roll(group, -1)

    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    topics, subs = item_topic.tolist(), item_sub.tolist()
    n_workers = _workers(n_items, workers)
    size = max(64, min(1024, -(-n_items // (n_workers * 8))))
    chunks = [list(range(a, min(a + size, n_items))) for a in range(0, n_items, size)]
    jobs = [(world_cfg, cfg, images, c, [keys[i] for i in c], [topics[i] for i in c], [subs[i] for i in c])
            for c in chunks]
    with atomic_path(out_dir / "items.csv") as tmp, tmp.open("w", newline="") as fh, \
            tqdm(total=n_items, desc=f"synthetic items {out_dir.name}", unit="item", leave=False) as bar:
        writer = csv.writer(fh)
        writer.writerow(["item_id", "title", "modality"])
        # a process pool that raises (BrokenProcessPool) rather than hangs if a worker dies
        pool = ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) if n_workers > 1 else None
        try:
            results = pool.map(_render_items, jobs) if pool is not None else map(_render_items, jobs)
            for chunk, titles in zip(chunks, results):
                writer.writerows([keys[i], title, "text" if is_text[i] else "image"] for i, title in zip(chunk, titles))
                bar.update(len(chunk))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    n_rows = 0
    n_topics = world.n_topics
    tables = [BlockTable(item_pop[p], item_sub[p]) if len(p) > EXACT_POOL else None for p in by_topic]
    with atomic_path(out_dir / "interactions.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "item_id", "timestamp"])
        for u in tqdm(range(n_users), desc=f"synthetic users {out_dir.name}", unit="user", leave=False):
            taste = rng.dirichlet(np.full(n_topics, 0.25)) * 0.7 + topic_mix * 0.3
            sub_taste = rng.dirichlet(np.ones(N_SUBTOPICS), size=n_topics)
            length = int(rng.integers(lo, hi + 1))
            t = int(1_600_000_000 + rng.integers(0, 30_000_000))
            topic = _draw(rng, _cdf(taste))
            topic_cdf: dict[int, np.ndarray] = {}  # this user's next-topic table, by current topic
            item_cdf: dict[int, np.ndarray] = {}   # this user's item table, by topic
            user, rows, prev = f"{key_prefix}u{u:06d}", [], -1
            for _ in range(length):
                if prev >= 0 and rng.random() < 0.25:
                    item = int(follow[prev])
                else:
                    cdf = topic_cdf.get(topic)
                    if cdf is None:
                        p = 0.5 * world.transitions[topic] + 0.5 * taste
                        cdf = topic_cdf[topic] = _cdf(p / p.sum())
                    topic = _draw(rng, cdf)
                    pool_items = by_topic[topic]
                    if len(pool_items) == 0:
                        continue
                    if tables[topic] is not None:  # a large topic: two-level search, O(sqrt) per draw
                        cum = item_cdf.get(topic)
                        if cum is None:
                            cum = item_cdf[topic] = tables[topic].user_blocks(sub_taste[topic])
                        item = int(pool_items[tables[topic].draw(rng, cum, sub_taste[topic])])
                    else:
                        cdf = item_cdf.get(topic)
                        if cdf is None:
                            w = item_pop[pool_items] * sub_taste[topic][item_sub[pool_items]]
                            cdf = item_cdf[topic] = _cdf(w / w.sum())
                        item = int(pool_items[_draw(rng, cdf)])
                topic = int(item_topic[item])
                rows.append((user, keys[item], t))
                prev = item
                # ~10% of consecutive clicks share a timestamp (exercises the tie-break rule)
                t += 0 if rng.random() < 0.1 else int(rng.exponential(3600)) + 60
            writer.writerows(rows)
            n_rows += len(rows)
    return {"users": n_users, "items": n_items, "interactions": n_rows}
