"""Plots of benchmark rows. matplotlib is optional: ``pyplot()`` is None without it and the CLI says so once.

Every line or marker set gets its own colour (a colormap with as many colours as series, then the same
colours with the next marker) and its own marker per baseline. Categorical plots put each case at its own
x and spread the series of one case side by side, so no two cases or series sit on top of each other."""
import math

MARKERS = "osD^vP*Xh<>p"
LINESTYLES = ("-", "--", ":", "-.")


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colours(n: int):
    """n colours, all distinct while n <= 20 (tab10, then tab20); past 20 they repeat, so callers that can
    have more series also change the marker every 20 series (see ``style``)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def style(series_index: int, n_series: int, baseline_index: int):
    """(colour, marker, linestyle) unique for every (series, baseline) pair."""
    blocks = math.ceil(n_series / 20)  # how many markers one baseline needs to keep colour x marker unique
    colour = colours(n_series)[series_index]
    marker = MARKERS[(baseline_index * blocks + series_index // 20) % len(MARKERS)]
    return colour, marker, LINESTYLES[baseline_index % len(LINESTYLES)]


def _face(baseline_index: int) -> dict:
    """Filled markers for the first baseline, larger hollow ones for the next: two baselines that measure
    the same ratio at one x stay visible one inside the other."""
    if baseline_index % 2 == 0:
        return {"markersize": 5}
    return {"markersize": 8, "markerfacecolor": "none", "markeredgewidth": 1.3}


def _value(row, x):
    return x(row) if callable(x) else row[x]


def _log_y(ax, subs, unit=""):
    """Log y axis with plain labels (2x, 5x, 10x or 0.01, 0.1, 1) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}{unit}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _finish(plt, fig, ax, path, title, y_label, n_entries):
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    _log_y(ax, (1.0, 2.0, 5.0), "x")
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", axis="y", alpha=0.3)
    # Many series: the legend goes beside the axes, in as many columns as it needs, never over the points.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if n_entries <= 24 else 2,
              frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def speedups(path, title, rows, *, x, x_label, series_key, speedup_keys, categorical=False, log_x=False,
             connect=True):
    """Speedup of posext over each baseline, one colour per series and one marker per baseline.

    ``x`` and ``series_key`` are row keys or functions of the row. ``categorical``: one slot per distinct x
    (in row order), the (series, baseline) pairs side by side inside it; else a numeric x, lines joined when
    ``connect``. Returns what was drawn: {legend label: {"colour", "marker", "points": [(x, y)]}}."""
    plt = pyplot()
    series_names = list(dict.fromkeys(_value(r, series_key) for r in rows))
    pairs = [(s, k, label) for s in series_names for k, label in speedup_keys
             if any(_value(r, series_key) == s and r.get(k) for r in rows)]
    categories = list(dict.fromkeys(_value(r, x) for r in rows)) if categorical else None
    width = max(7.0, 1.1 * len(categories)) if categorical else 7.0
    fig, ax = plt.subplots(figsize=(width + 3.2, 4.6))
    drawn = {}
    for i, (series, key, label) in enumerate(pairs):
        colour, marker, line = style(series_names.index(series), len(series_names),
                                     [k for k, _ in speedup_keys].index(key))
        sub = [r for r in rows if _value(r, series_key) == series and r.get(key)]
        if categorical:
            offset = 0.8 * ((i + 0.5) / len(pairs) - 0.5)  # spreads the pairs over 80% of a slot
            xs = [categories.index(_value(r, x)) + offset for r in sub]
        else:
            sub.sort(key=lambda r: _value(r, x))
            xs = [_value(r, x) for r in sub]
        baseline = [k for k, _ in speedup_keys].index(key)
        ax.plot(xs, [r[key] for r in sub], marker=marker, color=colour, linestyle=line if connect and not
                categorical else "none", label=f"{series}: {label}", **_face(baseline))
        drawn[f"{series}: {label}"] = {"colour": colour, "marker": marker,
                                       "points": list(zip(xs, (r[key] for r in sub)))}
    if categorical:
        ax.set_xticks(range(len(categories)))
        ax.set_xticklabels(categories, rotation=25, ha="right", fontsize=8)
        for edge in range(1, len(categories)):
            ax.axvline(edge - 0.5, color="lightgrey", lw=0.8)
        ax.set_xlim(-0.5, len(categories) - 0.5)
    else:
        ax.grid(True, which="both", axis="x", alpha=0.3)
        if log_x:
            ax.set_xscale("log")
    ax.set_xlabel(x_label)
    _finish(plt, fig, ax, path, title, "speedup: baseline time / posext time (log)", len(pairs))
    return drawn


def model_costs(path, title, rows, panels, native_sides):
    """Per model and image side, each panel's timm and posext times (ms, log): one colour per model, solid
    timm, dashed posext. ``panels`` = [(timm key, posext key, panel title)]; the native side is marked.
    Returns what was drawn: {(panel title, legend label): [(image side, ms)]}."""
    plt = pyplot()
    models = list(dict.fromkeys(r["series"] for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels) + 2.5, 4.6), squeeze=False)
    drawn = {}
    for ax, (timm_key, posext_key, panel_title) in zip(axes[0], panels):
        for m, model in enumerate(models):
            sub = sorted((r for r in rows if r["series"] == model), key=lambda r: r["image"])
            colour = colours(len(models))[m]
            for index, (key, impl, line, marker) in enumerate(((timm_key, "timm", "-", "o"),
                                                                (posext_key, "posext", "--", "s"))):
                ax.plot([r["image"] for r in sub], [r[key] for r in sub], color=colour, linestyle=line,
                        marker=marker, label=f"{model}: {impl}", **_face(index))
                drawn[(panel_title, f"{model}: {impl}")] = [(r["image"], r[key]) for r in sub]
        for native in {native_sides.get(r["model"]) for r in rows} - {None}:
            ax.axvline(native, color="grey", lw=0.8, ls=":")
        _log_y(ax, (1.0, 2.0, 5.0))
        ax.set_xlabel("image side (px); dotted: the native side, where timm does not resize")
        ax.set_ylabel("ms per forward (log)")
        ax.set_title(panel_title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn
