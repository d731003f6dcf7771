"""Tables and plots of a suite run: ``results.md`` and the PNG figures.

A task result's tables are ``result["tables"]`` (speed, claims, ode, control), else one row per
entry of ``result["methods"]`` (images), else every list or dict of dicts at its top level and one
"summary" table of its scalars. Plots read ``curves`` (claims), ``methods`` (images), ``latency``
(speed) and the NFE column of the other tables.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

try:
    from benchmarks.common import columns_of, pyplot
except ModuleNotFoundError:  # run as a script's sibling: python benchmarks/<name>.py
    from common import columns_of, pyplot

__all__ = ["collect_tables", "markdown", "table_markdown", "write_plots", "write_results"]

_MAX_LIST = 8  # longer lists (per-time curves, ...) are left out of tables
_SUMMARY_KEYS = ("target", "targets", "verdicts", "ratios")


def write_results(
    folder: str | Path, stem: str, result: Any, markdown_text: str, *, allow_nan: bool = True
) -> None:
    """Write ``stem.json`` and ``stem.md`` into ``folder`` (created if missing).

    Each file goes to a temporary name first and is renamed over the old one, so a reader never
    sees half a file and a failed run leaves the previous results whole.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (
        (f"{stem}.json", json.dumps(result, indent=1, allow_nan=allow_nan)),
        (f"{stem}.md", markdown_text),
    ):
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, folder / name)


# -- tables ----------------------------------------------------------------------------------------


def _cell_ok(value: Any) -> bool:
    if isinstance(value, dict):
        return False
    if isinstance(value, list):
        return len(value) <= _MAX_LIST and all(not isinstance(v, (list, dict)) for v in value)
    return True


def _rows_table(name: str, task: str, title: str, rows: list[dict]) -> dict | None:
    rows = [{k: v for k, v in r.items() if _cell_ok(v)} for r in rows if isinstance(r, dict)]
    rows = [r for r in rows if r]
    if not rows:
        return None
    return {"name": name, "task": task, "title": title, "columns": columns_of(rows), "rows": rows}


def _generic_tables(task: str, result: dict) -> list[dict]:
    tables = []
    summary = {}
    for key, value in result.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            t = _rows_table(f"{task}_{key}", task, f"{task}: {key}", value)
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            rows = [{"name": k, **v} for k, v in value.items()]
            t = _rows_table(f"{task}_{key}", task, f"{task}: {key}", rows)
        elif isinstance(value, dict) and value and all(_cell_ok(v) for v in value.values()):
            t = _rows_table(f"{task}_{key}", task, f"{task}: {key}", [value])
        else:
            t = None
            if _cell_ok(value) and not isinstance(value, list):
                summary[key] = value
        if t is not None:
            tables.append(t)
    if summary:
        tables.insert(0, _rows_table(f"{task}_summary", task, f"{task}: summary", [summary]))
    return tables


def _images_tables(result: dict) -> list[dict]:
    rows = [{"method": k, **v} for k, v in result["methods"].items()]
    title = f"Images ({result.get('suite', '?')}): digits"
    if result.get("extractor"):
        title += f", features: {result['extractor']}"
    tables = [_rows_table("images_methods", "images", title, rows)]
    extra = {}
    lat = result.get("sampling_latency_s")
    if isinstance(lat, dict):
        extra.update({f"latency {k}": v for k, v in lat.items()})
    for key in ("target", "target_heldout"):
        tgt = result.get(key)
        if isinstance(tgt, dict):
            extra.update({f"{key.replace('_', ' ')} {k}": v for k, v in tgt.items()})
    if extra:
        tables.append(
            _rows_table("images_latency_target", "images", "Images: latency, target", [extra])
        )
    return [t for t in tables if t is not None]


def collect_tables(record: dict) -> list[dict]:
    """Every table of every successful task, in task order (see the module docstring)."""
    tables: list[dict] = []
    for task, entry in record.get("results", {}).items():
        result = entry.get("result")
        if entry.get("status") != "ok" or not isinstance(result, dict):
            continue
        if isinstance(result.get("tables"), list) and result["tables"]:
            # Small summary dicts beside the tables (targets, verdicts, ratios) are shown too.
            extra = {k: result[k] for k in _SUMMARY_KEYS if isinstance(result.get(k), dict)}
            found = []
            for t in result["tables"]:
                if isinstance(t, dict) and t.get("rows"):
                    t = dict(t)
                    t.setdefault("task", task)
                    t.setdefault("name", f"{task}_{len(found)}")
                    t.setdefault("title", t["name"])
                    t["columns"] = t.get("columns") or columns_of(t["rows"])
                    found.append(t)
            tables.extend(found)
            tables.extend(_generic_tables(task, extra))
        elif isinstance(result.get("methods"), dict):
            tables.extend(_images_tables(result))
        else:
            tables.extend(_generic_tables(task, result))
    return tables


def _fmt_cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_fmt_cell(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def table_markdown(table: dict) -> str:
    """One table as Markdown (title, optional claim and verdict, then the grid)."""
    cols = table["columns"]
    lines = [f"#### {table.get('title', table.get('name', ''))}", ""]
    if table.get("claim"):
        lines += [f"Claim: {table['claim']}", ""]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table["rows"]:
        lines.append("| " + " | ".join(_fmt_cell(row.get(c, "")) for c in cols) + " |")
    if table.get("verdict"):
        lines += ["", f"**Verdict:** {table['verdict']}"]
    if table.get("note"):
        lines += ["", f"_{table['note']}_"]
    return "\n".join(lines) + "\n"


def markdown(record: dict) -> str:
    """The whole ``results.md``."""
    m = record["machine"]
    git = record.get("git", {})
    dirty = " (with local changes)" if git.get("dirty") else ""
    lines = [
        f"# meanflow_sci benchmarks: {record['suite']} suite",
        "",
        f"- date: {record['date']}",
        f"- machine: {m.get('processor')} ({m.get('platform')}), {m.get('cpu_count')} CPUs "
        f"({m.get('cpus_available')} available), load average {m.get('load_average')}",
        f"- torch {m.get('torch')}, {m.get('torch_threads')} threads, device {m.get('device')}"
        + (f" ({m['cuda_device']})" if m.get("cuda_device") else ""),
        f"- git commit: {record.get('git_commit')}{dirty}",
        f"- seed: {record['seed']}; tasks: {', '.join(record['tasks_requested'])}; "
        f"total wall time {record['wall_s']:.0f} s",
        "",
        "| task | status | wall s | error |",
        "|---|---|---|---|",
    ]
    for task, entry in record["results"].items():
        lines.append(
            f"| {task} | {entry['status']} | {entry['wall_s']:.1f} | "
            f"{_fmt_cell(entry.get('error') or '')} |"
        )
    lines.append("")
    claims = [t for t in record.get("tables", []) if t.get("task") == "claims"]
    if claims:
        lines += ["## Claims at a glance", "", "| claim | verdict |", "|---|---|"]
        for t in claims:
            lines.append(f"| {_fmt_cell(t['title'])} | {_fmt_cell(t.get('verdict', ''))} |")
        lines.append("")
    by_task: dict[str, list[dict]] = {}
    for t in record.get("tables", []):
        by_task.setdefault(t.get("task", "?"), []).append(t)
    for task, tables in by_task.items():
        lines += [f"## {task}", ""]
        if task == "claims":
            res = record["results"]["claims"]["result"]
            lines += ["```", res.get("verdict_rules", "").rstrip(), "```", ""]
            for k, v in (res.get("quality_metrics") or {}).items():
                lines.append(f"- quality ({k}): {v}")
            lines.append("")
        for t in tables:
            lines += [table_markdown(t)]
    if record.get("plots"):
        lines += ["## Plots", ""]
        lines += [f"![{p}]({p})" for p in record["plots"]]
        lines.append("")
    if record.get("errors"):
        lines += ["## Errors", ""]
        for e in record["errors"]:
            lines.append(f"- {e['task']}: {_fmt_cell(e['error'])}")
        lines.append("")
    return "\n".join(lines)


# -- plots -----------------------------------------------------------------------------------------


def _panels(record: dict, kind: str) -> list[tuple[str, str, str, dict[str, list]]]:
    """(title, x label, y label, series) panels for "nfe" or "time"."""
    panels = []
    results = {t: e["result"] for t, e in record["results"].items() if e["status"] == "ok"}
    x_key, x_label = ("nfe", "NFE") if kind == "nfe" else ("train_s", "training wall clock (s)")
    curves = (results.get("claims") or {}).get("curves", {}).get(f"ode_quality_vs_{kind}")
    if curves:
        s = {
            k: [(p[x_key], p["rel_l2"]) for p in v if p.get("rel_l2") is not None]
            for k, v in curves.items()
        }
        panels.append(("claims: ODE (Van der Pol)", x_label, "median rel L2", s))
    images = results.get("images")
    if images and isinstance(images.get("methods"), dict):
        s: dict[str, list] = {}
        for name, r in images["methods"].items():
            fd = r.get("frechet_distance")
            if fd is None or r.get("objective") == "data":  # the real-digit reference row
                continue
            obj = str(r.get("objective", name)).upper()
            if kind == "nfe" and r.get("nfe") is not None:
                s.setdefault(obj, []).append((r["nfe"], fd))
            if kind == "time" and r.get("train_time_s") is not None:
                s.setdefault(f"{name}", []).append((r["train_time_s"], fd))
        if s:
            panels.append(("images: digits", x_label, "Fréchet distance", s))
    if kind == "nfe":
        panels.extend(_table_panels(record))
    return panels


# Quality columns that task tables use, in order of preference, for the NFE plot.
_QUALITY_KEYS = (
    "rel_l2_median",
    "frechet_distance",
    "sw_over_floor",
    "sw_mean",
    "normalized_score",
    "normalised_score",
    "score",
)


def _table_panels(record: dict) -> list[tuple[str, str, str, dict[str, list]]]:
    """Quality against NFE from task tables that have an NFE column and a known quality column
    (rows grouped by ``method``); speed, claims and images tables are skipped (they are drawn
    from their own data)."""
    panels = []
    for t in record.get("tables", []):
        # speed and claims have panels of their own; images is drawn from its methods above.
        if t.get("task") in ("speed", "claims", "images"):
            continue
        cols = t.get("columns", [])
        nfe_key = next((c for c in cols if c.lower() == "nfe"), None)
        metric = next((k for k in _QUALITY_KEYS if k in cols), None)
        if nfe_key is None or metric is None:
            continue
        series: dict[str, list] = {}
        for row in t["rows"]:
            x, y = row.get(nfe_key), row.get(metric)
            if isinstance(x, (int, float)) and x > 0 and isinstance(y, (int, float)):
                series.setdefault(str(row.get("method", "?")), []).append((x, y))
        if series:
            title = str(t.get("title", t["name"]))
            panels.append((title[:48], "NFE", metric, series))
    return panels


def _style(ax, title: str, xlabel: str, ylabel: str | None = None, legend: int = 8) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend)


def _save(fig, path: Path) -> bool:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return True


def _plot_panels(panels, path: Path, logx: bool) -> bool:
    panels = [p for p in panels if any(p[3].values())]
    if not panels:
        return False
    fig, axes = pyplot().subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, xl, yl, series) in zip(axes[0], panels):
        for label, pts in series.items():
            pts = sorted(pts)
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        if logx:
            ax.set_xscale("log")
        _style(ax, title, xl, yl)
    return _save(fig, path)


def _plot_losses(record: dict, path: Path) -> bool:
    groups: dict[str, dict[str, list]] = {}
    for task, entry in record["results"].items():
        res = entry.get("result")
        if entry["status"] != "ok" or not isinstance(res, dict):
            continue
        for label, pts in (res.get("curves") or {}).get("loss_curves", {}).items():
            if isinstance(pts, list) and pts:
                group = f"{task}: {label.split(' ')[0]}" if task == "claims" else task
                groups.setdefault(group, {})[label] = pts
    if not groups:
        return False
    fig, axes = pyplot().subplots(1, len(groups), figsize=(4.5 * len(groups), 3.6), squeeze=False)
    for ax, (title, series) in zip(axes[0], groups.items()):
        for label, pts in series.items():
            xs = [p[0] for p in pts if p[1] is not None]
            ys = [p[1] for p in pts if p[1] is not None]
            # Per-step losses are noisy: a running mean over ~1/40 of the run shows the trend.
            w = max(1, len(ys) // 40)
            ys = [
                sum(ys[max(0, i - w + 1) : i + 1]) / len(ys[max(0, i - w + 1) : i + 1])
                for i in range(len(ys))
            ]
            ax.plot(xs, ys, label=label, lw=1)
        ax.set_yscale("log")
        _style(ax, f"{title} (unweighted MSE, running mean)", "optimizer step", legend=7)
    return _save(fig, path)


def _plot_latency(record: dict, path: Path) -> bool:
    speed = record["results"].get("speed")
    if not speed or speed["status"] != "ok" or not speed["result"].get("latency"):
        return False
    series: dict[str, list] = {}
    for r in speed["result"]["latency"]:
        series.setdefault(f"{r['backbone']} {r['method']}", []).append((r["nfe"], r["ms"]))
    fig, ax = pyplot().subplots(figsize=(5.5, 4))
    for label, pts in series.items():
        pts = sorted(pts)
        ls = "-" if label.endswith("MMF") else "--"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ls, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _style(ax, "sampling latency", "NFE", "ms per batch", legend=7)
    return _save(fig, path)


def write_plots(record: dict, out: str | Path) -> list[str]:
    """Write the PNG plots into ``out``; return their file names (only those with data)."""
    plots = {
        "quality_vs_nfe.png": lambda path: _plot_panels(_panels(record, "nfe"), path, logx=True),
        "quality_vs_time.png": lambda path: _plot_panels(_panels(record, "time"), path, logx=False),
        "loss_curves.png": lambda path: _plot_losses(record, path),
        "sampling_latency.png": lambda path: _plot_latency(record, path),
    }
    return [name for name, plot in plots.items() if plot(Path(out) / name)]
