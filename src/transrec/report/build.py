"""`transrec report`: tables (markdown + CSV), transfer gains, PNG plots, all from the metrics JSONs.

Writes to {paths.results}/report/:
    results.csv, results.md     every platform x setting of the main point (mean, and std over seeds), with
                                the test metrics by how often the test item occurs in training (0, 1-4,
                                5+ times: users_seen<b>, <metric>_seen<b>); results.md also holds the gains
    gains.csv                   finetune over scratch, id and popularity per target, at the main point and
                                every target share: absolute and relative, with the 95% paired bootstrap
                                interval over test users and seeds (<metric>_low/_high, within_noise)
    scaling_source.csv          NDCG@10 against the share of source users used for pre-training (long:
                                platform, setting, fraction, mean, std, seeds)
    scaling_target.csv          NDCG@10 against the share of target users trained on (long)
    curves_source.csv, curves_target.csv
                                the scaling target's curves, wide (fraction + one column per setting):
                                what `dvc plots show` draws
    plots/bars_<platform>.png   HR@10 and NDCG@10 per setting, one chart per platform
    plots/scaling_source.png, plots/scaling_target.png
    summary.json                the headline numbers (a plain output: DVC metrics are the per-run files)
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display: write PNGs
import matplotlib.pyplot as plt  # noqa: E402

from transrec.atomic import atomic_path, write_json  # noqa: E402
from transrec.evaluate.metrics import metric_names  # noqa: E402
from transrec.evaluate.per_user import SEEN_BUCKETS  # noqa: E402
from transrec.paths import GAINS_CSV, MAKE_RUN, RESULTS_CSV, RESULTS_MD, SUMMARY, TRAIN_LOG  # noqa: E402
from transrec.report import results as R  # noqa: E402
from transrec.report.intervals import RESAMPLES  # noqa: E402
from transrec.transfer_settings import REGISTRY  # noqa: E402
from transrec.variants import Variant, run_name  # noqa: E402


def table_columns(ks: list[int]) -> list[str]:
    """The markdown table's columns: @10, and the largest cut-off when it is above 10."""
    top = max(ks)
    return ["hr@10", "ndcg@10", *([f"hr@{top}", f"ndcg@{top}"] if top > 10 else []), "mrr"]


def colour(setting: str) -> str:
    record = REGISTRY.get(setting)
    return record.colour if record else "#333333"


def write_csv(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        if not rows:
            fh.write("")
            return
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _cell(row: dict, metric: str) -> str:
    mean, std = row[metric], row.get(f"{metric}_std", 0.0)
    return f"{mean:.4f} ± {std:.4f}" if row.get("seeds", 1) > 1 else f"{mean:.4f}"


NOT_CONVERGED_MARK = " †"  # after a setting whose point has a run still improving at its budget


def markdown_table(rows: list[dict], metrics: list[str]) -> str:
    out = io.StringIO()
    out.write("| platform | setting | " + " | ".join(m.upper().replace("@", "@") for m in metrics) + " |\n")
    out.write("|---|---|" + "---|" * len(metrics) + "\n")
    for r in rows:
        mark = NOT_CONVERGED_MARK if r.get("not_converged") else ""
        out.write(f"| {r['platform']} | {r['setting']}{mark} | " + " | ".join(_cell(r, m) for m in metrics) + " |\n")
    return out.getvalue()



def not_converged(cells: dict) -> list[str]:
    """Every point (platform/run, the variants' too) with a run that ended at its budget still improving."""
    return [f"{platform}/{run_name(setting, Variant(src=src, tgt=tgt))}"
            for (platform, setting, src, tgt), cell in sorted(cells.items()) if cell.not_converged]


def convergence_note(flagged: list[str]) -> str:
    """One line under the tables: how many points have a run that ended at its budget still improving."""
    if not flagged:
        return ("Every trained run stopped by patience or ended at its budget with its best step before the last 10% of "
                "it (converged by that rule).\n")
    return (f"{NOT_CONVERGED_MARK.strip()} not converged: {len(flagged)} point(s) with a run that ended at its budget with its "
            f"best step in the last 10% of it ({', '.join(flagged)}): more steps would likely move them.\n")


def _gain_cell(row: dict, metric: str) -> str:
    rel = row[f"{metric}_gain_rel"]
    text = f"{row[f'{metric}_gain']:+.4f}" + ("" if math.isnan(rel) else f" ({rel:+.0%})")
    if row[f"{metric}_low"] is None:
        return text + " [n/a]"
    return (text + f" [{row[f'{metric}_low']:+.4f}, {row[f'{metric}_high']:+.4f}]"
            + (" within noise" if row[f"{metric}_within_noise"] else ""))


def gains_markdown(rows: list[dict]) -> str:
    out = io.StringIO()
    out.write("Gain [95% paired bootstrap interval over the test users, and over the seeds where a setting has "
              f"replicates; {RESAMPLES} resamples]; *within noise* where the interval covers 0.\n\n")
    out.write("| target | target users | finetune over | HR@10 base | HR@10 finetune | HR@10 gain | NDCG@10 base "
              "| NDCG@10 finetune | NDCG@10 gain |\n")
    out.write("|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        cells = []
        for m in R.HEADLINE:
            cells += [f"{r[f'{m}_base']:.4f}", f"{r[f'{m}_over']:.4f}", _gain_cell(r, m)]
        out.write(f"| {r['platform']} | {r['target_share']:.0%} | {r['base']} | " + " | ".join(cells) + " |\n")
    if any(r[f"{m}_low"] is None for r in rows for m in R.HEADLINE):
        out.write("\nn/a: a run of that comparison has no per-user test ranks in its run_info file (evaluated before "
                  "they were kept); rerun its evaluate step for the interval.\n")
    return out.getvalue()


def cold_markdown(rows: list[dict]) -> str:
    """Test HR@10 / NDCG@10 by how often the test item occurs in the training sequences; '' when no run has
    the split (a results folder from before it was kept)."""
    names = [name for name, _, _ in SEEN_BUCKETS]
    shown = [r for r in rows if r[f"users_seen{names[0]}"] is not None]
    if not shown:
        return ""
    out = io.StringIO()
    out.write("Test users grouped by how often their test item occurs in the training sequences (0, 1-4, 5+ "
              "times); mean over seeds, - where a bucket has no user.\n\n")
    out.write("| platform | setting | users " + " / ".join(names) + " | "
              + " | ".join(f"{m.upper()} {b}×" for m in R.HEADLINE for b in names) + " |\n")
    out.write("|---|---|---|" + "---|" * len(R.HEADLINE) * len(names) + "\n")
    for r in shown:
        values = [r[f"{m}_seen{b}"] for m in R.HEADLINE for b in names]
        out.write(f"| {r['platform']} | {r['setting']} | " + " / ".join(str(r[f"users_seen{b}"]) for b in names)
                  + " | " + " | ".join("-" if v is None else f"{v:.4f}" for v in values) + " |\n")
    if len(shown) < len(rows):
        out.write(f"\n{len(rows) - len(shown)} row(s) left out: evaluated before the split was kept (rerun their "
                  "evaluate step).\n")
    return out.getvalue()


def gain_key(row: dict) -> str:
    """'t1/finetune-scratch', or 't1/finetune-scratch@tgt0.1' at a share of the target users."""
    share = "" if row["target_share"] == 1.0 else f"@tgt{row['target_share']:g}"
    return f"{row['platform']}/{row['over']}-{row['base']}{share}"


def _save(fig, path: Path) -> None:
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def bar_chart(rows: list[dict], platform: str, path: Path) -> None:
    part = [r for r in rows if r["platform"] == platform]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, metric in zip(axes, R.HEADLINE):
        names = [r["setting"] for r in part]
        ax.bar(names, [r[metric] for r in part], yerr=[r[f"{metric}_std"] for r in part],
               color=[colour(n) for n in names], capsize=3)
        ax.set_title(f"{platform}: {metric.upper()}")
        ax.tick_params(axis="x", rotation=30)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def scaling_chart(rows: list[dict], axis: str, path: Path, metric: str = "ndcg@10") -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for (platform, setting) in sorted({(r["platform"], r["setting"]) for r in rows}):
        pts = sorted((r for r in rows if r["platform"] == platform and r["setting"] == setting),
                     key=lambda r: r["fraction"])
        ax.errorbar([p["fraction"] for p in pts], [p[metric] for p in pts], yerr=[p[f"{metric}_std"] for p in pts],
                    marker="o", capsize=3, label=f"{platform}/{setting}", color=colour(setting))
    ax.set_xscale("log")
    ax.set_xlabel("share of source users (pre-training)" if axis == "src" else "share of target users (training)")
    ax.set_ylabel(metric.upper())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def heatmap(rows: list[dict], path: Path, metric: str = "ndcg@10") -> None:
    """The main table at a glance: platform x setting, colour and value = the metric (mean over seeds)."""
    platforms = sorted({r["platform"] for r in rows})
    settings = [s for s in REGISTRY if any(r["setting"] == s for r in rows)]
    settings += sorted({r["setting"] for r in rows} - set(settings))
    value = {(r["platform"], r["setting"]): r[metric] for r in rows}
    grid = np.array([[value.get((p, s), np.nan) for s in settings] for p in platforms])
    fig, ax = plt.subplots(figsize=(1.2 * len(settings) + 2.2, 0.55 * len(platforms) + 1.4))
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(settings)), settings, rotation=30)
    ax.set_yticks(range(len(platforms)), platforms)
    top = np.nanmax(grid) if np.isfinite(grid).any() else 1.0
    for i, j in np.ndindex(grid.shape):
        if np.isfinite(grid[i, j]):
            ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=8,
                    color="black" if grid[i, j] > 0.6 * top else "white")
    ax.set_title(f"test {metric.upper()} (mean over seeds)")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    _save(fig, path)


def validation_curves(models_dir: Path, platform: str, path: Path, metric: str = "ndcg@10") -> bool:
    """Validation metric vs optimiser step of every trained run of a platform (from its train_log.json);
    False when the platform has no trained run."""
    logs = []
    for log_path in sorted((models_dir / platform).glob(f"*/{TRAIN_LOG}")):
        log = json.loads(log_path.read_text())
        if log.get("evaluations"):
            logs.append((log_path.parent.name, log))
    if not logs:
        return False
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for run, log in logs:
        setting = run.partition("@")[0]
        main_point = "@" not in run
        ax.plot([e["step"] for e in log["evaluations"]], [e["valid"][metric] for e in log["evaluations"]],
                label=run if main_point or len(logs) <= 12 else None, color=colour(setting),
                alpha=1.0 if main_point else 0.35, lw=1.6 if main_point else 0.9)
        if log.get("best_step"):
            best = next((e for e in log["evaluations"] if e["step"] == log["best_step"]), None)
            if best is not None and main_point:
                ax.plot(best["step"], best["valid"][metric], "o", color=colour(setting), ms=4)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(f"valid {metric.upper()}")
    ax.set_title(f"{platform}: validation during training (dot: best checkpoint)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _save(fig, path)
    return True


def wide_curves(points: list[dict], platform: str | None, metric: str = "ndcg@10") -> list[dict]:
    """One row per fraction, one column per setting of `platform` (default: the first one with points);
    a setting missing a fraction of the others is left out (a DVC plot needs every value)."""
    platform = platform or next((p["platform"] for p in points), None)
    part = [p for p in points if p["platform"] == platform]
    fractions = sorted({p["fraction"] for p in part})
    by = {(p["setting"], p["fraction"]): p[metric] for p in part}
    settings = [s for s in dict.fromkeys(p["setting"] for p in part) if all((s, f) in by for f in fractions)]
    return [{"fraction": f, **{s: round(by[(s, f)], 6) for s in settings}} for f in fractions]


def build(results_dir: Path, ks: list[int], scaling_target: str | None = None) -> dict:
    """Tables, gains, plots and summary.json from every metrics file; `ks` is evaluate.ks."""
    cells = R.collect(results_dir / "metrics")
    out = results_dir / "report"
    rows = R.main_table(cells, metric_names(ks))
    write_csv(out / RESULTS_CSV, rows)
    gain_rows = R.gains(cells)
    write_csv(out / GAINS_CSV, gain_rows)
    scaling_points = {name: R.scaling(cells, axis) for axis, name in (("src", "scaling_source"), ("tgt", "scaling_target"))}
    md = ("## Results (test, leave-one-out, full ranking)\n\n"
          + markdown_table(rows, table_columns(ks)) + "\n" + convergence_note(not_converged(cells)))
    if gain_rows:
        md += "\n## Transfer gain: finetune over scratch, id and popularity\n\n" + gains_markdown(gain_rows)
    cold = cold_markdown(rows)
    if cold:
        md += "\n## Cold items: test metrics by the test item's training count\n\n" + cold
    with atomic_path(out / RESULTS_MD) as tmp:
        tmp.write_text(md)
    plots = [out / "plots" / "heatmap.png"]
    heatmap(rows, plots[0])
    for platform in sorted({r["platform"] for r in rows}):
        path = out / "plots" / f"bars_{platform}.png"
        bar_chart(rows, platform, path)
        plots.append(path)
        if validation_curves(results_dir / "models", platform, out / "plots" / f"validation_{platform}.png"):
            plots.append(out / "plots" / f"validation_{platform}.png")
    curves = {}
    for axis, name in (("src", "scaling_source"), ("tgt", "scaling_target")):
        points = scaling_points[name]
        write_csv(out / f"{name}.csv", points)
        write_csv(out / f"curves_{name.split('_')[1]}.csv", wide_curves(points, scaling_target))
        if points:
            scaling_chart(points, axis, out / "plots" / f"{name}.png")
            plots.append(out / "plots" / f"{name}.png")
        curves[name] = len(points)
    summary = {
        "results": {f"{r['platform']}/{r['setting']}": {m: round(r[m], 6) for m in R.HEADLINE} for r in rows},
        "gains": {gain_key(r): {f"{m}_{part}": None if r[f"{m}_{part}"] is None else round(r[f"{m}_{part}"], 6)
                                for m in R.HEADLINE for part in ("gain", "low", "high")} for r in gain_rows},
        "cold_items": {f"{r['platform']}/{r['setting']}": {
            name: {"users": r[f"users_seen{name}"], **{m: r[f"{m}_seen{name}"] for m in R.HEADLINE}}
            for name, _, _ in SEEN_BUCKETS} for r in rows if r[f"users_seen{SEEN_BUCKETS[0][0]}"] is not None},
        "scaling_points": curves,
        "not_converged": not_converged(cells),
        "plots": [p.name for p in plots],
    }
    write_json(out / SUMMARY, summary)
    return {"rows": rows, "gains": gain_rows, "markdown": md, "plots": plots, "summary": summary,
            "scaling": scaling_points, "scaling_target": scaling_target}


def log_to_wandb(params: dict, out: dict) -> str | None:
    """One W&B run (job_type report) in the study's group: the tables as wandb.Table, the plots as images, the
    headline means and each gain with its interval (summary.json's numbers) as summary. The gains go under
    gain/: a summary key under gains/ would collide with the gains table's own keys."""
    from transrec.train.tracking import Tracker

    tracker = Tracker(params, "report", "report", ["report"], {"study": params.get("study", {})})
    tracker.table("results", out["rows"])
    tracker.table("gains", out["gains"])
    for name, points in out["scaling"].items():
        tracker.table(name, points)
    tracker.images({f"plots/{p.stem}": p for p in out["plots"]})
    tracker.summary({f"{key}/{m}": v for key, row in out["summary"]["results"].items() for m, v in row.items()})
    tracker.summary({f"gain/{key}/{name}": v for key, row in out["summary"]["gains"].items()
                     for name, v in row.items() if v is not None})
    run_dir = tracker.run_dir
    tracker.finish()
    return run_dir


README_FIGURES = ("heatmap.png", "scaling_target.png", "scaling_source.png")  # + validation_<scaling target>


def update_readme(readme: Path, results_dir: Path, out: dict, block: str = "results",
                  figures_dir: Path = Path("docs/figures")) -> list[Path]:
    """Replace the block between the `<!-- BLOCK:begin -->` / `<!-- BLOCK:end -->` markers of a markdown file
    (README.md, docs/results.md) with this report: the make-run wall time (<results>/make_run.json, written
    by `make run`), the tables, and the scaling plots copied to figures_dir (prefixed with the block's name
    unless it is the default study's `results`), linked relative to the file. Returns the copied figures."""
    import json
    import os
    import shutil

    from transrec.errors import TransrecError

    README_BEGIN, README_END = f"<!-- {block}:begin -->", f"<!-- {block}:end -->"
    if README_BEGIN not in readme.read_text() or README_END not in readme.read_text():
        raise TransrecError(f"{readme}: no '{README_BEGIN}' ... '{README_END}' block to fill")
    run_file = results_dir / MAKE_RUN
    how = "Produced by `make run`"
    if run_file.is_file():
        run = json.loads(run_file.read_text())
        how += (f" at commit {run['commit']} ({run['finished']}): {run['wall_s'] / 60:.1f} min wall time on "
                f"{run['cores']} CPU cores, install excluded")
    figures = []
    lines = [README_BEGIN, "", how + "; copied here by `make readme`.", "", out["markdown"].replace("## ", "#### ")]
    validation = sorted(p.name for p in (results_dir / "report" / "plots").glob("validation_*.png"))
    wanted = f"validation_{out.get('scaling_target')}.png"  # the curves of one target: the scaling target's
    for name in [*README_FIGURES, *([wanted] if wanted in validation else validation[:1])]:
        src = results_dir / "report" / "plots" / name
        if src.is_file():
            target = name if block == "results" else f"{block}_{name}"
            dst = Path(figures_dir) / target
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            figures.append(dst)
            link = Path(os.path.relpath(dst.resolve(), readme.resolve().parent)).as_posix()
            lines += [f"![{target[:-4]}]({link})", ""]
    replace_block(readme, block, "\n".join(lines[1:]))
    return figures


def replace_block(readme: Path, block: str, body: str) -> None:
    """Put `body` between the README's `<!-- BLOCK:begin -->` and `<!-- BLOCK:end -->` markers."""
    from transrec.errors import TransrecError

    begin, end = f"<!-- {block}:begin -->", f"<!-- {block}:end -->"
    text = readme.read_text()
    if begin not in text or end not in text:
        raise TransrecError(f"{readme}: no '{begin}' ... '{end}' block to fill")
    head, rest = text.split(begin, 1)
    with atomic_path(readme) as tmp:
        tmp.write_text(head + begin + "\n" + body.rstrip("\n").removesuffix(end).rstrip("\n") + "\n" + end
                       + rest.split(end, 1)[1])
