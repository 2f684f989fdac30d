"""Plots of the release report, drawn with matplotlib's Agg backend; each function returns PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["metric_bars", "pareto_front", "tradeoff_plot", "training_curves"]


def _figure(width: float, height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})  # no version stamp: same bytes
    return buffer.getvalue()


def metric_bars(scores: Mapping[str, Mapping[str, float]], metric: str) -> bytes:
    """Grouped bars: one group per dataset, one bar per model (`scores[model][dataset]`)."""
    datasets = sorted({d for per_model in scores.values() for d in per_model})
    figure = _figure(max(6.0, 1.4 * len(datasets) + 2), 4.0)
    axes = figure.subplots()
    width = 0.8 / max(len(scores), 1)
    for i, (model, per_dataset) in enumerate(scores.items()):
        xs = [j + i * width for j, d in enumerate(datasets) if d in per_dataset]
        axes.bar(xs, [per_dataset[d] for d in datasets if d in per_dataset], width, label=model)
    axes.set_xticks([j + 0.4 - width / 2 for j in range(len(datasets))], datasets)
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} per dataset")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(figure)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, effectiveness) that no other point dominates (a cost at most
    theirs and an effectiveness at least theirs, one of them strictly), by increasing cost."""
    front = []
    for i, (cost, value) in enumerate(points):
        dominated = any(
            (c <= cost and v >= value) and (c < cost or v > value)
            for j, (c, v) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def tradeoff_plot(panels: Sequence[tuple[str, Mapping[str, tuple[float, float]]]], metric: str) -> bytes:
    """One panel per cost (`(cost name, {model: (cost, effectiveness)})`), the Pareto front drawn;
    a panel without points says so."""
    figure = _figure(5.0 * max(len(panels), 1), 4.0)
    axes_list = figure.subplots(1, max(len(panels), 1), squeeze=False)[0]
    for axes, (cost_name, points) in zip(axes_list, panels, strict=False):
        axes.set_xlabel(cost_name)
        axes.set_ylabel(metric)
        if not points:
            axes.text(0.5, 0.5, f"no model reports {cost_name}", ha="center", va="center")
            continue
        names = list(points)
        xy = [points[n] for n in names]
        axes.scatter([x for x, _ in xy], [y for _, y in xy], color="tab:blue")
        for name, (x, y) in zip(names, xy, strict=True):
            axes.annotate(name, (x, y), fontsize="x-small", xytext=(3, 3), textcoords="offset points")
        front = pareto_front(xy)
        axes.plot(
            [xy[i][0] for i in front],
            [xy[i][1] for i in front],
            color="tab:red",
            marker="o",
            label="Pareto front",
        )
        axes.legend(fontsize="small")
    return _png(figure)


def training_curves(
    logged: Sequence[Mapping[str, float]], evaluated: Sequence[Mapping[str, Any]], metric: str
) -> bytes:
    """Loss parts per logged step (left) and the evaluation metric per checkpoint (right)."""
    figure = _figure(10.0, 4.0)
    left, right = figure.subplots(1, 2)
    parts = [k for k in ("loss", "infonce", "distill", "flops", "df_flops") if any(k in r for r in logged)]
    for part in parts:
        steps = [r["step"] for r in logged if part in r]
        left.plot(steps, [r[part] for r in logged if part in r], label=part)
    left.set_xlabel("step")
    left.set_title("training loss parts")
    if parts:
        left.set_yscale("log")
        left.legend(fontsize="small")
    points = [(r["step"], r[metric]) for r in evaluated if isinstance(r.get(metric), int | float)]
    right.plot([s for s, _ in points], [v for _, v in points], marker="o")
    right.set_xlabel("step")
    right.set_title(f"{metric} per checkpoint")
    return _png(figure)
