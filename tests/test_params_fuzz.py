"""Every schema-valid params file runs or is refused in one line (issue 21): params files drawn around the tiny
world by mutating it along the schema (a seeded strategy of our own: drop a key, give a key a value of
another type, another enum member, a bound of a number or a list, a key the schema does not know), each
checked the way a user meets it: `transrec validate` (schema, study, sources, job table) accepts it or
refuses it in one line; an accepted one then builds its dvc.yaml, a report from hand-made metrics of every
run it declares, and, for a seeded sample, `snakemake -n`. Anything else (a traceback) fails the test,
naming the case's mutations."""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

from conftest import BIN, make_workdir, run, tiny_params
from transrec import jobs, study
from transrec import params as P
from transrec.errors import TransrecError
from transrec.report.build import build

CASES = 400        # drawn params files (the tiny params have ~130 keys: each is the first mutation 3 times)
SNAKEMAKE = 12     # of the accepted ones, this many also through `snakemake -n` (a subprocess each, ~3 s)


def _resolve(node: dict, root: dict) -> dict:
    """Follow "$ref" JSON pointers ("#/properties/model/...", "#/$defs/...") within the schema."""
    while "$ref" in node:
        target = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _sites(value, node: dict, root: dict, path: tuple = ()) -> list[tuple[tuple, dict]]:
    """(key path, schema) of every key present in `value`, depth first."""
    node = _resolve(node, root)
    out = []
    if isinstance(value, dict):
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        for key, child in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                out.append(((*path, key), _resolve(sub, root)))
                out += _sites(child, sub, root, (*path, key))
    return out


def _types(node: dict) -> list[str]:
    t = node.get("type", [])
    return t if isinstance(t, list) else [t]


WRONG = {"integer": "seven", "number": "x", "boolean": "yes", "string": 3, "array": {"a": 1}, "object": [1], "null": 0}


def _draw(node: dict, root: dict, rng: random.Random, current):
    """A new value for a key with schema `node` (another than `current` where there is one: a few tries)."""
    value = current
    for _ in range(5):
        value = _draw_once(node, root, rng, current)
        if value != current:
            break
    return value


def _draw_once(node: dict, root: dict, rng: random.Random, current):
    """A value for a key with schema `node`: mostly legal, sometimes at or past a bound or of a wrong type."""
    types = _types(node)
    if rng.random() < 0.15 and types:
        return WRONG[rng.choice(types)]
    if "enum" in node:
        return rng.choice(node["enum"])
    if "integer" in types or "number" in types:
        lo, hi = node.get("minimum", node.get("exclusiveMinimum", -3)), node.get("maximum", 1000)
        choice = rng.choice([lo, hi, lo - 1, hi + 1, rng.randint(int(lo), int(min(hi, lo + 50)))])
        return choice if "integer" in types else choice * rng.choice([1, 0.5, 1.5])
    if "array" in types:
        items = _resolve(node.get("items", {}), root)
        if isinstance(current, list) and current and rng.random() < 0.5:
            return current[: rng.randint(0, len(current))] or current[:1] * rng.randint(0, 2)  # shorter, or a repeat
        if "enum" in items:
            return rng.sample(items["enum"], rng.randint(0, len(items["enum"])))
        if "integer" in _types(items):
            return sorted(rng.sample([1, 5, 10, 20, 50, 100], rng.randint(0, 3)))
        if "number" in _types(items):
            return [rng.choice([0.0, 0.1, 0.25, 0.5, 1.0, 1.5]) for _ in range(rng.randint(0, 3))]
        return []
    if "boolean" in types:
        return rng.random() < 0.5
    if "null" in types and rng.random() < 0.5:
        return None
    if "string" in types:
        return rng.choice(["", "src", "tgt", "nowhere", "xxx"])
    return None


def _get(params: dict, path: tuple):
    for key in path:
        params = params[key]
    return params


FIRST_KINDS = ("drop", "value", "value", "unknown")


def mutate(base: dict, schema: dict, rng: random.Random, first: int) -> tuple[dict, list[str]]:
    """1-3 mutations. The first walks the tiny params: case `first` takes key number first % n (n keys) and the
    kind FIRST_KINDS[first // n], so every key is dropped once and redrawn twice; in the first two rounds
    (each key dropped, each key redrawn) it is the only one, later 0-2 random others follow."""
    params, done = copy.deepcopy(base), []
    keys = len(_sites(params, schema, schema))
    for n in range(1 if first < 2 * keys else rng.choice([1, 2, 3])):
        sites = _sites(params, schema, schema)
        if n == 0:
            (path, node), kind = sites[first % len(sites)], FIRST_KINDS[(first // len(sites)) % len(FIRST_KINDS)]
        else:
            (path, node), kind = rng.choice(sites), rng.choices(["drop", "value", "unknown"], weights=[2, 7, 1])[0]
        parent, key, name = _get(params, path[:-1]), path[-1], ".".join(map(str, path))
        if kind == "drop":
            del parent[key]
            done.append(f"drop {name}")
        elif kind == "unknown":
            parent[f"{key}_extra"] = 1
            done.append(f"add {name}_extra")
        else:
            parent[key] = _draw(node, schema, rng, parent[key])
            done.append(f"set {name} = {parent[key]!r}")
    return params, done


def hand_made_metrics(params: dict, results: Path) -> None:
    """A metrics file for every run the study declares, with the metrics a run writes for evaluate.ks (HR and
    NDCG at each cut-off and at 10, the early-stopping monitor, and MRR: transrec.train.loop.Run.ks)."""
    ks = sorted(set(params["evaluate"]["ks"]) | {10})
    names = [*(f"hr@{k}" for k in ks), *(f"ndcg@{k}" for k in ks), "mrr"]
    for platform, run_name in study.evaluations(params):
        path = results / "metrics" / platform / f"{run_name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        test = {m: round(0.1 + 0.01 * i, 4) for i, m in enumerate(names)}
        path.write_text(json.dumps({"platform": platform, "setting": run_name.split("@")[0], "test": test,
                                    "valid": test}))


@pytest.mark.slow
def test_drawn_params_files_run_or_are_refused_in_one_line(tiny_bert_dir, tmp_path):
    base = tiny_params(tiny_bert_dir)
    schema = P.schema()
    jobs.check(P.validate(copy.deepcopy(base)))  # the starting point is valid
    outcomes, failures, accepted = {"refused": 0, "accepted": 0}, [], []
    for case in range(CASES):
        params, done = mutate(base, schema, random.Random(1000 + case), first=case)
        try:
            try:
                P.validate(params, "case")
                jobs.check(params)
            except TransrecError as exc:
                assert "\n" not in str(exc), f"a refusal of more than one line: {exc}"
                outcomes["refused"] += 1
                continue
            outcomes["accepted"] += 1
            jobs.dvc_yaml(params)
            results = tmp_path / f"case{case}"
            hand_made_metrics(params, results)
            build(results, params["evaluate"]["ks"], params["study"]["scaling"]["target"])
            accepted.append((case, params, done))
        except Exception as exc:  # noqa: BLE001 - any other exception is the bug this test looks for
            failures.append(f"case {case} ({'; '.join(done)}): {type(exc).__name__}: {exc}")
    sample = random.Random(7).sample(accepted, min(SNAKEMAKE, len(accepted)))
    for case, params, done in sample:
        work = make_workdir(tmp_path / f"work{case}", params)
        proc = run([str(BIN / "snakemake"), "-n", "--cores", "1", "--quiet"], work, check=False, timeout=300)
        if proc.returncode != 0:
            failures.append(f"case {case} ({'; '.join(done)}): snakemake -n: {proc.stderr.strip()[-500:]}")
    print(f"{CASES} drawn params files: {outcomes['accepted']} accepted, {outcomes['refused']} refused in one line; "
          f"{len(sample)} accepted ones also through snakemake -n")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)
    assert outcomes["accepted"] >= CASES // 5 and outcomes["refused"] >= CASES // 5  # the strategy reaches both sides
