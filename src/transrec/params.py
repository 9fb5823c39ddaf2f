"""Loading and validating params.yaml: the one parameter file of Snakemake and DVC, and the profiles that
overlay it (`extends:`, see `read`).

Validation runs before any work. A wrong key or type raises TransrecError with one line naming the
key path and what is expected (plus a "did you mean" for misspelt keys).
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from transrec.errors import TransrecError

SCHEMA_PATH = Path(__file__).resolve().parent / "params.schema.json"
DEFAULT_PARAMS = "params.yaml"
# Keys of the `data` section a platform may override.
DATA_KEYS = ("tie_break", "dedup", "filter", "modality", "image", "text")


def schema() -> dict:
    """params.schema.json with its enums taken from the registries they name: the settings
    (transrec.transfer_settings) and the platform adapters (transrec.platforms), so one record adds either."""
    from transrec.platforms import ADAPTER_MODULES
    from transrec.transfer_settings import scalable, transfer_settings

    tree = json.loads(SCHEMA_PATH.read_text())
    tree["$defs"]["platform"]["properties"]["adapter"]["enum"] = list(ADAPTER_MODULES)
    tree["properties"]["transfer"]["properties"]["settings"]["items"]["enum"] = list(transfer_settings())
    tree["properties"]["study"]["properties"]["scaling"]["properties"]["settings"]["items"]["enum"] = list(scalable())
    return tree


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _describe(error: jsonschema.ValidationError, source: str) -> str:
    where = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        bad = extra[0] if extra else "?"
        full = f"{where}.{bad}" if error.absolute_path else bad
        hint = difflib.get_close_matches(bad, allowed, n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        return f"{source}: unknown key '{full}'{suggestion}; allowed here: {', '.join(allowed)}"
    if error.validator == "required":
        return f"{source}: {where}: {error.message}"
    if error.validator == "enum":
        options = " | ".join(str(v) for v in error.validator_value)
        return f"{source}: {where}: expected one of {options}, got {error.instance!r}"
    if error.validator == "type":
        return f"{source}: {where}: expected {error.validator_value}, got {error.instance!r}"
    if error.validator in ("minimum", "maximum", "minLength", "minItems", "maxItems", "pattern", "minProperties"):
        return f"{source}: {where}: {error.message}"
    return f"{source}: {where}: {error.message}"


def validate(params: Any, source: str = DEFAULT_PARAMS) -> dict:
    """Validate a params mapping; raise TransrecError with one line for the first problem."""
    if not isinstance(params, dict):
        raise TransrecError(f"{source}: expected a mapping of parameters at top level")
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        # A misspelt key invalidates its whole branch: name the unknown key first, else the shallowest error.
        unknown = [e for e in errors if e.validator == "additionalProperties"]
        raise TransrecError(_describe(unknown[0] if unknown else errors[0], source))
    _check_cross_fields(params, source)
    return params


def _check_cross_fields(params: dict, source: str) -> None:
    for name, platform in params["platforms"].items():
        adapter = platform["adapter"]
        if adapter == "synthetic" and "synthetic" not in platform:
            raise TransrecError(f"{source}: platforms.{name}.synthetic: required for adapter synthetic")
        if adapter != "synthetic":
            location = platform.get("location") or {}
            if not location.get("path") and not location.get("url"):
                raise TransrecError(f"{source}: platforms.{name}.location: give a local path or a url for adapter {adapter}")
        if "synthetic" in platform:
            lo, hi = platform["synthetic"].get("history", [1, 1])
            if lo > hi:
                raise TransrecError(f"{source}: platforms.{name}.synthetic.history: min {lo} > max {hi}")
        if platform.get("layout") and adapter != "synthetic":
            _check_layout(name, adapter, platform["layout"], source)


def _check_layout(name: str, adapter: str, layout: dict, source: str) -> None:
    """A misspelt layout key stops the run here, before any step writes, not later in clean."""
    import importlib

    from transrec.platforms import ADAPTER_MODULES
    from transrec.platforms.layout import resolve_layout

    try:
        defaults = getattr(importlib.import_module(ADAPTER_MODULES[adapter]), "LAYOUT", None)
    except ImportError:  # an adapter not installed yet reports itself when it is used
        return
    if defaults is None:
        return
    try:
        resolve_layout(adapter, defaults, layout)
    except TransrecError as exc:
        raise TransrecError(f"{source}: platforms.{name}.{exc}") from None


def _read(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise TransrecError(f"params file not found: {path} (run from the project folder or pass --params)")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise TransrecError(f"{path}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None


def read(path: str | Path) -> dict:
    """A params file as a whole study: an overlay merged onto the base it `extends`.

    A profile names its base (`extends: ../params.yaml`, relative to the profile's own folder; a base may
    itself extend another) and holds only what it changes: mappings merge key by key, any other value
    (a list, a scalar, null) replaces the base's. `replace: [platforms, synthetic_world]` drops those
    base keys (dotted paths) first, so the overlay's section stands alone (or, when the overlay omits it,
    the key is gone): a profile's platforms are its study's, not added to the default's."""
    return _layered(Path(path), ())


def _layered(path: Path, chain: tuple) -> dict:
    raw = _read(path)
    if not isinstance(raw, dict):
        raise TransrecError(f"{path}: expected a mapping of parameters at top level")
    base_name, replace = raw.pop("extends", None), raw.pop("replace", [])
    if base_name is None:
        if replace:
            raise TransrecError(f"{path}: replace: only an overlay (a file with extends:) replaces keys")
        return raw
    if not isinstance(base_name, str) or not base_name:
        raise TransrecError(f"{path}: extends: expected the path of a params file, got {base_name!r}")
    if not isinstance(replace, list) or not all(isinstance(k, str) and k for k in replace):
        raise TransrecError(f"{path}: replace: expected a list of dotted keys, got {replace!r}")
    base_path = path.parent / base_name
    if base_path.resolve() in (*chain, path.resolve()):
        raise TransrecError(f"{path}: extends: {base_name} extends {path} again (a cycle)")
    if not base_path.is_file():
        raise TransrecError(f"{path}: extends: {base_path} not found (the path is relative to {path.parent}/)")
    base = _layered(base_path, (*chain, path.resolve()))
    for dotted in replace:
        *parents, leaf = dotted.split(".")
        section = base
        for key in parents:
            section = section.get(key) if isinstance(section, dict) else None
        if not isinstance(section, dict) or leaf not in section:
            raise TransrecError(f"{path}: replace: '{dotted}' is not a key of {base_path}")
        del section[leaf]
    return _merge(base, raw)


def load(path: str | Path = DEFAULT_PARAMS) -> dict:
    return validate(read(path), str(path))


RESOLVED_DIR = Path(".snakemake") / "transrec"  # where Snakemake's resolved parameters go, one file per content


def _typed(value: Any) -> Any:
    """Snakemake reads a nested --config value with YAML's BaseLoader (every scalar a string): read its scalars
    as the params file's YAML would (train='{seed: 5}' sets the integer 5)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if not isinstance(parsed, dict | list) else value
    return value


def resolve(params_file: str | Path, configfiles: list, overrides: dict,
            folder: Path = RESOLVED_DIR) -> tuple[dict, str]:
    """The parameters one Snakemake invocation plans with, and the file every job's command reads them from.

    `--configfile F` (several: merged in order, later keys win) replaces the params file (TRANSREC_PARAMS,
    else params.yaml) rather than being merged into it: a profile is a whole study, and a union of two
    studies' platforms is neither. `--config key=value` (a nested section as `train='{seed: 5}'`) is merged
    on top. When either is given, the result is validated and written once to <folder>/params-<sha>.yaml
    (named by its content: the same invocation, e.g. a cluster job's own snakemake, finds the same file), and
    that path is what TRANSREC_PARAMS becomes for the jobs; otherwise the params file itself is returned."""
    files = [Path(f) for f in configfiles] or [Path(params_file)]
    params: dict = {}
    for path in files:
        params = _merge(params, read(path))
    params = _merge(params, {k: _typed(v) for k, v in dict(overrides).items()})
    source = " + ".join([*map(str, files), *(["--config " + ",".join(sorted(overrides))] if overrides else [])])
    validate(params, source)
    if not configfiles and not overrides:
        return params, str(params_file)
    text = yaml.safe_dump(params, sort_keys=False)
    path = Path(folder) / f"params-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    if not path.is_file():
        from transrec.atomic import write_text

        write_text(path, f"# resolved by snakemake from {source}\n" + text)
    return params, str(path)


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def source_members(params: dict) -> list[str]:
    """The platforms study.source names: none, one, or several that one pre-training pools."""
    named = (params.get("study") or {}).get("source")
    return [] if named is None else [named] if isinstance(named, str) else list(named)


def source_platform(params: dict) -> str | None:
    """The platform pre-training reads: study.source itself, or, when it names several, the pooled platform
    'a+b+c' (transrec.data.pool writes its processed folder from theirs); None for a study without one."""
    members = source_members(params)
    return "+".join(members) if members else None


def platform_config(params: dict, name: str) -> dict:
    """A platform's full settings: the `data` defaults overridden by the platform's own keys (the pooled
    source platform: the defaults, role source, and its members under `pool`)."""
    if name not in params["platforms"] and len(source_members(params)) > 1 and name == source_platform(params):
        return {**copy.deepcopy(params["data"]), "name": name, "role": "source", "pool": source_members(params),
                "location": {}, "layout": {}}
    if name not in params["platforms"]:
        known = ", ".join(params["platforms"])
        raise TransrecError(f"unknown platform '{name}'; params declare: {known}")
    platform = params["platforms"][name]
    merged = _merge(params["data"], {k: v for k, v in platform.items() if k in DATA_KEYS})
    merged.update({k: copy.deepcopy(v) for k, v in platform.items() if k not in DATA_KEYS})
    merged["name"] = name
    merged.setdefault("role", "target")
    merged.setdefault("location", {})
    merged.setdefault("layout", {})
    return merged

