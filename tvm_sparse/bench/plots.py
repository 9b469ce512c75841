"""Figures of the benchmark commands and the notebooks (matplotlib), one function per figure.

Each function takes the rows the commands write with ``--json`` (dataclasses as dicts), draws
one figure, saves it when given a path and returns it. The figures are made without pyplot, so
no display or GUI backend is involved (and nothing stays open).
"""

from matplotlib.figure import Figure

#: Layers whose densities were varied are named ``LAYER@DENSITY`` (tvm_sparse.bench.kernels.layer_named).
DENSITY_SEPARATOR = "@"


def _save(figure, path):
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def _grouped_bars(axes, groups, series, values, ylabel):
    """Bars of ``values[(group, series)]`` (missing ones left out), one cluster per group."""
    width = 0.8 / max(1, len(series))
    for index, name in enumerate(series):
        xs = [g + index * width for g, group in enumerate(groups) if (group, name) in values]
        ys = [values[(group, name)] for group in groups if (group, name) in values]
        axes.bar(xs, ys, width, label=name)
    axes.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], groups)
    axes.set_ylabel(ylabel)
    axes.legend(fontsize="small")


def model_latencies(rows, path=None, title="Batch-1 latency"):
    """Grouped bars: each model at each thread count, one bar per runtime (rows of ``bench models`` or ``bench model``).

    Parameters
    ----------
    rows : list[dict]
        With ``model``, ``threads`` and ``median_ms`` (runtime -> ms).
    path : str, optional
        Where to save the PNG.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    groups = [f"{row['model']}\n{row['threads']} thread{'s' if row['threads'] > 1 else ''}" for row in rows]
    series = list(dict.fromkeys(runtime for row in rows for runtime in row["median_ms"]))
    values = {(group, runtime): ms for group, row in zip(groups, rows) for runtime, ms in row["median_ms"].items()}
    figure = Figure(figsize=(max(6, 1.6 * len(groups) + 2), 4), layout="tight")
    axes = figure.subplots()
    _grouped_bars(axes, groups, series, values, "ms (median)")
    axes.set_title(title)
    return _save(figure, path)


def kernel_speedups(rows, path=None):
    """Speed-up of our best sparse kernel over the best dense one, and its fraction of the ideal, vs density.

    One line per layer and thread count; the ideal is the FLOP reduction (dense FLOPs / kept FLOPs).

    Parameters
    ----------
    rows : list[dict]
        Rows of ``bench kernels`` (``layer``, ``threads``, ``median_ms``, ``flop_reduction``); a
        layer run at several densities (``LAYER@D``) is one line.
    path : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from tvm_sparse.bench.kernels import DENSE_RUNTIMES, SPARSE_RUNTIMES  # noqa: PLC0415 - numpy/TVM-free module

    lines = {}
    for row in rows:
        base = row["layer"].split(DENSITY_SEPARATOR)[0]
        dense = min(ms for runtime, ms in row["median_ms"].items() if runtime in DENSE_RUNTIMES)
        sparse = min(ms for runtime, ms in row["median_ms"].items() if runtime in SPARSE_RUNTIMES)
        lines.setdefault((base, row["threads"]), []).append(
            (1.0 / row["flop_reduction"], dense / sparse, dense / sparse / row["flop_reduction"]))
    figure = Figure(figsize=(12, 4.5), layout="tight")
    speedup, ideal = figure.subplots(1, 2)
    for (base, threads), points in sorted(lines.items()):
        points.sort()
        for axes, column in ((speedup, 1), (ideal, 2)):
            axes.plot([p[0] for p in points], [p[column] for p in points], marker="o", label=f"{base}, {threads} thr")
    speedup.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    speedup.set_ylabel("best dense / best sparse")
    speedup.set_title("Speed-up over the best dense implementation")
    ideal.set_ylabel("speed-up / FLOP reduction")
    ideal.set_title("Fraction of the ideal (removed FLOPs) reached")
    for axes in (speedup, ideal):
        axes.set_xlabel("density (kept weights)")
        axes.legend(fontsize="x-small")
    return _save(figure, path)


def pruning_report(datasets, path=None):
    """Per dataset: wall time of each pruning recipe and accuracy vs compression of each scheme.

    Parameters
    ----------
    datasets : list[dict]
        As ``prune-report --json`` writes them: ``name``, ``cost`` (recipe -> ``accuracy``,
        ``seconds``, ``compression``) and ``schemes`` (scheme -> method -> the same; may be empty).
    path : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    columns = 2 if any(data["schemes"] for data in datasets) else 1
    figure = Figure(figsize=(6 * columns, 3.8 * len(datasets)), layout="tight")
    axes = figure.subplots(len(datasets), columns, squeeze=False)
    for row_axes, data in zip(axes, datasets):
        recipes = list(data["cost"])
        cost = row_axes[0]
        cost.barh(recipes, [data["cost"][r]["seconds"] for r in recipes])
        for y, recipe in enumerate(recipes):
            m = data["cost"][recipe]
            cost.annotate(f" {m['accuracy']:.1f}% at {m['compression']:.1f}x", (m["seconds"], y), va="center",
                          fontsize="small")
        cost.invert_yaxis()
        cost.set_xlabel("wall time (s)")
        cost.set_title(f"{data['name']}: cost of pruning (accuracy at compression)")
        if columns == 2:
            schemes = row_axes[1]
            for scheme, methods in data["schemes"].items():
                for method, m in methods.items():
                    schemes.scatter(m["compression"], m["accuracy"], marker="o" if method == "ClickTrain" else "s",
                                    label=f"{scheme}: {method}")
            dense = data["cost"].get("dense training")
            if dense:
                schemes.axhline(dense["accuracy"], color="grey", linestyle="--", linewidth=1, label="dense")
            schemes.set_xlabel("measured compression")
            schemes.set_ylabel("accuracy %")
            schemes.set_title(f"{data['name']}: accuracy vs compression per scheme")
            schemes.legend(fontsize="xx-small")
    return _save(figure, path)


def layer_breakdown(profiles, path=None, top=8):
    """Stacked bars: where each model's time goes, from ``CompiledModel.profile`` (``Profile.breakdown``).

    Parameters
    ----------
    profiles : dict[str, dict[str, float]]
        Bar label -> ``{part: ms}``, as :meth:`tvm_sparse.profile.Profile.breakdown` returns.
    path : str, optional
    top : int
        The parts that take the most time over all bars are drawn one by one; the others as one.

    Returns
    -------
    matplotlib.figure.Figure
    """
    totals = {}
    for parts in profiles.values():
        for part, ms in parts.items():
            totals[part] = totals.get(part, 0.0) + ms
    shown = sorted(totals, key=totals.get, reverse=True)[:top]
    figure = Figure(figsize=(8, 4.5), layout="tight")
    axes = figure.subplots()
    bottoms = [0.0] * len(profiles)
    for part in shown + ["other layers"]:
        heights = [parts.get(part, 0.0) if part != "other layers" else
                   sum(ms for p, ms in parts.items() if p not in shown) for parts in profiles.values()]
        axes.bar(list(profiles), heights, bottom=bottoms, label=part)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    axes.set_ylabel("ms (each kernel timed alone)")
    axes.set_title("Where the time goes, per layer")
    axes.legend(fontsize="x-small", bbox_to_anchor=(1.02, 1), loc="upper left")
    return _save(figure, path)
