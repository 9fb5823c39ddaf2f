"""The project's own promises: the two set-up commands, CI calling the README's test command,
and environment.yml carrying exactly pyproject's dependencies."""
from __future__ import annotations

import tomllib

import yaml

from conftest import ROOT


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert set(pip) - {"-e ."} == wanted
    assert "python=3.11" in env["dependencies"]


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "\nrun: venv" in makefile and "\ntest: venv" in makefile


def test_readme_is_short_and_every_docs_link_resolves():
    """The README is what a newcomer reads first (reference pages live in docs/); a moved or renamed page
    breaks a link, which this catches: every relative link of README.md and docs/*.md names a file, and an
    anchor names a heading of it."""
    import re

    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: link to {target}"
            if anchor and linked.suffix == ".md":
                headings = [re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                            for h in re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.M)]
                assert anchor in headings, f"{page.name}: anchor #{anchor} not a heading of {linked.name}"
