"""The promotion report: one document (headings, tables, figures) rendered as Markdown and HTML."""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, work without a display

import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torch import nn  # noqa: E402

from sweeper.decision import ModelEvidence, Verdict  # noqa: E402

Block = tuple[str, Any]  # ("heading" | "text" | "table" | "figure", content)


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]


def render_markdown(title: str, blocks: Sequence[Block]) -> str:
    lines = [f"# {title}", ""]
    for kind, content in blocks:
        if kind == "heading":
            lines += [f"## {content}", ""]
        elif kind == "text":
            lines += [content, ""]
        elif kind == "table":
            lines += ["| " + " | ".join(content.header) + " |", "|" + "---|" * len(content.header)]
            lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in content.rows] + [""]
        elif kind == "figure":
            lines += [f"![{content}]({content})", ""]
    return "\n".join(lines)


def render_html(title: str, blocks: Sequence[Block]) -> str:
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>", _STYLE, f"<h1>{html.escape(title)}</h1>"]
    for kind, content in blocks:
        if kind == "heading":
            parts.append(f"<h2>{html.escape(content)}</h2>")
        elif kind == "text":
            parts.append(f"<p>{html.escape(content)}</p>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in content.header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in content.rows)
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "figure":
            parts.append(f"<figure><img src='{html.escape(content)}' alt='{html.escape(content)}'></figure>")
    return "\n".join(parts)


_STYLE = """<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
img{max-width:100%}</style>"""


def criteria_table(verdict: Verdict) -> Table:
    rows = [(c.name, c.measured, c.required, "pass" if c.passed else "FAIL", c.fails_to) for c in verdict.criteria]
    return Table(("criterion", "measured", "required", "result", "if failed"), rows)


def models_table(evidence: Sequence[ModelEvidence], metric: str, params: Mapping[str, int]) -> Table:
    rows = []
    for model in evidence:
        test = np.asarray(model.test, dtype=float)
        rows.append((
            model.name,
            f"{np.nanmean(test):.4g} ± {np.nanstd(test):.2g}",
            ", ".join(f"{v:.4g}" for v in test),
            f"{np.nanmean(model.validation):.4g}",
            f"{model.latency_p95_ms:.1f}",
            f"{params.get(model.name, 0):,}",
            model.diverged_seeds,
        ))  # fmt: skip
    header = ("model", f"test {metric} (mean ± sd)", "per seed", f"validation {metric}", "p95 latency ms", "parameters", "diverged seeds")
    return Table(header, rows)


def comparisons_table(verdict: Verdict) -> Table:
    """The candidate against each baseline: the numbers a reader of a benchmark claim asks for."""
    rows = [
        (
            c.baseline,
            f"{c.gain.point:+.1%} [{c.gain.low:+.1%}, {c.gain.high:+.1%}]",
            f"{c.gain.p_value:.3g}",
            f"{c.holm_p:.3g}",
            f"{c.improvement_probability.point:.2f} [{c.improvement_probability.low:.2f}, {c.improvement_probability.high:.2f}]",
            f"{c.effect_size:+.2f}",
        )
        for c in verdict.comparisons
    ]
    header = ("against", "relative gain [bounds]", "p (gain <= threshold)", "Holm-adjusted p",
              "P(candidate seed beats baseline seed) [bounds]", "effect size (Hedges' g)")  # fmt: skip
    return Table(header, rows)


# ---------------------------------------------------------------- plots


def comparison_plot(evidence: Sequence[ModelEvidence], metric: str, reference: float | None) -> plt.Figure:
    """Mean test metric with its spread over seeds, every seed as a dot."""
    figure, axes = plt.subplots(figsize=(6, 3.5))
    for index, model in enumerate(evidence):
        test = np.asarray(model.test, dtype=float)
        axes.bar(index, np.nanmean(test), yerr=np.nanstd(test), capsize=6, color="C0" if index == 0 else "C7", alpha=0.8)
        axes.scatter(np.full(len(test), index), test, color="k", zorder=3, s=12)
    if reference is not None:
        axes.axhline(reference, color="C3", linestyle="--", label="non-learned reference")
        axes.legend()
    axes.set_xticks(range(len(evidence)), [m.name for m in evidence])
    axes.set_ylabel(f"test {metric}")
    axes.set_title("candidate vs baselines (mean ± sd over seeds)")
    return figure


def learning_curves_plot(histories: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], metric: str) -> plt.Figure:
    """Validation metric per epoch, one line per model and seed."""
    figure, axes = plt.subplots(figsize=(6, 3.5))
    for index, (name, seeds) in enumerate(histories.items()):
        for seed, history in enumerate(seeds):
            epochs = [report["epoch"] for report in history if np.isfinite(report.get(metric, np.nan))]
            values = [report[metric] for report in history if np.isfinite(report.get(metric, np.nan))]
            axes.plot(epochs, values, color=f"C{index}", alpha=0.8, label=name if seed == 0 else None)
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.legend()
    axes.set_title("learning curves (every seed)")
    return figure


def attention_plots(model: nn.Module, inputs: Sequence[torch.Tensor], samples: int = 3) -> dict[str, plt.Figure]:
    """Heat maps of the attention weights of a few samples, one figure per attention module.

    Any submodule with ``attention_weights(x, mask) -> (B, heads, N, N)`` is drawn, averaged over
    heads and restricted to the sample's unmasked tokens.
    """
    captured: dict[str, tuple] = {}
    hooks = [
        module.register_forward_pre_hook(lambda m, args, name=name: captured.setdefault(name, args))
        for name, module in model.named_modules()
        if callable(getattr(module, "attention_weights", None))
    ]
    try:
        with torch.no_grad():
            model.eval()(*(tensor[:samples] for tensor in inputs))
            modules = dict(model.named_modules())
            weights = {name: modules[name].attention_weights(*args) for name, args in captured.items()}
    finally:
        for hook in hooks:
            hook.remove()
    figures = {}
    for name in weights:
        x, mask = captured[name][0], (captured[name][1:] or (None,))[0]  # a model may leave the mask out
        count = min(samples, len(x))
        figure, axes = plt.subplots(1, count, figsize=(4 * count, 3.6), squeeze=False, layout="constrained")
        for index in range(count):
            keep = mask[index] if mask is not None else torch.ones(x.shape[1], dtype=torch.bool)
            matrix = weights[name][index].mean(0)[keep][:, keep].cpu().numpy()
            image = axes[0, index].imshow(matrix, cmap="viridis", vmin=0)
            axes[0, index].set_title(f"sample {index}: {int(keep.sum())} tokens")
            axes[0, index].set(xlabel="key token", ylabel="query token")
            for axis in (axes[0, index].xaxis, axes[0, index].yaxis):
                axis.set_major_locator(MaxNLocator(integer=True))
            figure.colorbar(image, ax=axes[0, index], shrink=0.8)
        figure.suptitle(f"attention weights of {name} (mean over heads)")
        figures[f"attention_{name.replace('.', '_') or 'model'}.png"] = figure
    return figures


def save_figures(figures: Mapping[str, plt.Figure], directory: Path) -> list[str]:
    for name, figure in figures.items():
        figure.savefig(directory / name, dpi=110, bbox_inches="tight")
        plt.close(figure)
    return list(figures)
