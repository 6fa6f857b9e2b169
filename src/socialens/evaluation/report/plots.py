"""The report's figures: matplotlib (Agg backend, no display needed), returned as base64 PNG strings
ready for ``<img src="data:image/png;base64,...">`` so the HTML report stays one file."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 90
ACCENT = "#2b6cb0"
PARETO = "#c05621"


def _encode(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def metric_bars(
    names: Sequence[str], means: Sequence[float | None], cis: Sequence, *, metric: str = "macro-F1"
) -> str:
    """Horizontal bars of a score in [0, 1] (the task's headline ``metric``: macro-F1, entity
    micro-F1, ROUGE-2) per model with 95% CI error bars, in table order."""
    n = len(names)
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.38 * n))
    y = np.arange(n)[::-1]
    values = np.array([m if m is not None else np.nan for m in means], dtype=float)
    lows = np.array([values[i] - ci[0] if ci and ci[0] is not None else 0 for i, ci in enumerate(cis)])
    highs = np.array([ci[1] - values[i] if ci and ci[1] is not None else 0 for i, ci in enumerate(cis)])
    ax.barh(y, np.nan_to_num(values), color=ACCENT, alpha=0.85, height=0.6)
    ax.errorbar(
        np.nan_to_num(values),
        y,
        xerr=np.clip(np.vstack([lows, highs]), 0, None),
        fmt="none",
        ecolor="#222",
        capsize=3,
        lw=1,
    )
    for yi, v, hi in zip(y, values, highs, strict=True):
        if not math.isnan(v):
            ax.text(v + hi + 0.01, yi, f"{v:.3f}", va="center", fontsize=8)
    ax.set_yticks(y, list(names), fontsize=8)
    ax.set_xlim(0, 1.08)
    ax.set_xlabel(f"{metric} (mean over seeds; error bars: 95% bootstrap CI)")
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return _encode(fig)


def per_class_heatmap(names: Sequence[str], labels: Sequence[str], matrix: np.ndarray) -> str:
    """Models x classes heat map of F1, each cell annotated."""
    matrix = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(
        figsize=(1.6 + 1.0 * len(labels) + 0.05 * max(map(len, names)), 0.8 + 0.4 * len(names))
    )
    image = ax.imshow(np.nan_to_num(matrix), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            v = matrix[i, j]
            text = "-" if math.isnan(v) else f"{v:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if v > 0.6 else "black")
    ax.set_xticks(range(len(labels)), list(labels), rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), list(names), fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.04, label="F1")
    return _encode(fig)


def confusion_grid(
    names: Sequence[str], rows: Sequence[str], columns: Sequence[str], matrices: Sequence
) -> str:
    """One confusion matrix per model (counts summed over seeds), gold in rows, predictions plus
    refused / invalid / error in columns; each row shaded by its share of the gold class."""
    n = len(names)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    cell = 0.42
    width = max(3.0, 1.4 + cell * len(columns))
    height = max(2.4, 1.3 + cell * len(rows))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= n:
            ax.axis("off")
            continue
        counts = np.asarray(matrices[index], dtype=float)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Oranges", vmin=0, vmax=1, aspect="auto")
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                ax.text(
                    j,
                    i,
                    f"{int(counts[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if share[i, j] > 0.6 else "black",
                )
        ax.set_title(names[index], fontsize=9)
        ax.set_xticks(range(len(columns)), list(columns), rotation=40, ha="right", fontsize=7)
        ax.set_yticks(range(len(rows)), list(rows), fontsize=7)
        ax.axvline(len(rows) - 0.5, color="#555", lw=1)  # separates labels from non-ok columns
        ax.set_xlabel("predicted / status", fontsize=7)
        ax.set_ylabel("gold", fontsize=7)
    fig.subplots_adjust(wspace=0.45, hspace=0.75)  # tight_layout would draw the whole grid once more
    return _encode(fig)


def cost_scatter(
    names: Sequence[str],
    costs: Sequence[float],
    f1: Sequence[float],
    pareto: Sequence[bool],
    currency: str = "USD",
    metric: str = "macro-F1",
) -> str:
    """Cost per 1,000 classifications (log scale when it spans over a decade) against the task's
    headline ``metric``, with the Pareto front (cheapest model for its quality) drawn as a step line."""
    costs_a = np.asarray(costs, dtype=float)
    f1_a = np.asarray(f1, dtype=float)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    mask = np.asarray(pareto, dtype=bool)
    ax.scatter(costs_a[~mask], f1_a[~mask], color=ACCENT, s=36, label="model", zorder=3)
    ax.scatter(costs_a[mask], f1_a[mask], color=PARETO, s=52, marker="D", label="Pareto-optimal", zorder=4)
    if mask.any():
        order = np.argsort(costs_a[mask])
        ax.step(costs_a[mask][order], f1_a[mask][order], where="post", color=PARETO, lw=1.2, zorder=2)
    for name, x, y in zip(names, costs_a, f1_a, strict=True):
        ax.annotate(name, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7, alpha=0.9)
    positive = costs_a[costs_a > 0]
    if len(positive) and positive.max() / positive.min() > 10 and (costs_a > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel(f"cost per 1,000 classifications ({currency})")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.8)
    ax.spines[["top", "right"]].set_visible(False)
    return _encode(fig)
