"""Figures in one house style (seaborn/matplotlib). Functions take tidy frames and return the Figure."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

from pco_lib.data.currencies import money as _money
from pco_lib.data.currencies import money_label as _money_label

PALETTE = ["#0969da", "#e16f24", "#1a7f37", "#8250df", "#cf222e", "#57606a", "#bf8700", "#1b7c83"]
# Categories with a meaning keep their colour in every chart: the baseline grey, the NPS categories as traffic lights.
FIXED_COLORS = {"control": "#57606a", "all": "#24292f", "promoter": "#1a7f37", "passive": "#afb8c1",
                "detractor": "#cf222e"}
_CATEGORY_PALETTE = ["#0969da", "#e16f24", "#8250df", "#1b7c83", "#bf8700", "#bc4c00", "#6639ba", "#0550ae",
                     "#953800", "#116329"]  # for the others, in order of first appearance (no green/red/grey)
_assigned: dict[str, str] = {}


def category_color(name) -> str:
    """The colour of a category (segment, arm, plan, NPS category) — the same in every chart of a report:
    :data:`FIXED_COLORS` for the categories with a meaning ("promoters" and "promoter" alike), otherwise the
    next colour of the palette the first time a name is drawn."""
    key = str(name).strip().lower()
    for fixed in (key, key.removesuffix("s")):
        if fixed in FIXED_COLORS:
            return FIXED_COLORS[fixed]
    if key not in _assigned:
        _assigned[key] = _CATEGORY_PALETTE[len(_assigned) % len(_CATEGORY_PALETTE)]
    return _assigned[key]


def use_style() -> None:
    """The house style: white grid, readable sizes, one palette; in a notebook, every figure is shown with
    alt text that says what it shows (:func:`describe`)."""
    sns.set_theme(style="whitegrid", palette=PALETTE, rc={
        "figure.figsize": (9, 4), "figure.dpi": 100, "axes.titlesize": 13, "axes.titleweight": "bold",
        "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
    })
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        from matplotlib.figure import Figure

        # load the backend now: the inline backend sets its own PNG formatter when it is first loaded
        plt.switch_backend(plt.get_backend())
        shell.display_formatter.formatters["image/png"].for_type(Figure, _png_with_description)


PNG_SCALE = 1.5  # pixels per CSS pixel: sharp text on phones and high-density screens
PNG_COLORS = 256  # a chart has few colours: quantized, a PNG is 3-4x smaller and looks the same
# A heatmap is hundreds of numbers, each costing bytes at every pixel of scale: the sample's 24 × 13 cohort
# heatmap is 104 kB of base64 at 1.5×, 82 kB at 1.25× (three of them kept the cohort page over 500 kB).
HEATMAP_PNG_SCALE = 1.25


def _png_with_description(fig) -> tuple[str, dict]:
    """The figure as a PNG rendered at ``PNG_SCALE`` times its size and quantized to ``PNG_COLORS``
    colours, shown at its size (width/height), with :func:`describe` as its alt text (nbconvert writes both
    on the img). Measured on the sample's cohort heatmap: 182 kB as the inline backend renders it, 49 kB
    quantized at the same size."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    scale = getattr(fig, "pco_png_scale", PNG_SCALE)
    # stored uncompressed: it is read back at once, quantized and compressed then (same bytes, 0.05 s less)
    fig.savefig(buffer, format="png", dpi=fig.dpi * scale, bbox_inches="tight", facecolor="white",
                pil_kwargs={"compress_level": 0})
    image = Image.open(buffer).convert("RGB")
    small = io.BytesIO()
    # optimize (zlib level 9): 70-85 ms a chart; level 8 takes 30-40 ms but made the sample's cohort page, the
    # heaviest, 479 → 488 kB of its 500 kB budget
    image.quantize(colors=PNG_COLORS, method=Image.Quantize.FASTOCTREE).save(small, "PNG", optimize=True)
    width, height = (round(v / scale) for v in image.size)
    return base64.b64encode(small.getvalue()).decode("ascii"), {"alt": describe(fig), "width": width,
                                                                 "height": height}


def describe(fig) -> str:
    """Alt text: each chart's title, what its axes show and the series its legend names, e.g. "Relative lift
    vs control: relative change vs control, 95% interval, by metric. Series: better (significant)."."""
    suptitle = fig.get_suptitle()
    sentences = [suptitle] if suptitle else []
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>" or not ax.get_visible():
            continue
        title, y, x = ax.get_title(), ax.get_ylabel(), ax.get_xlabel()
        shows = " by ".join(v for v in (y, x) if v)
        text = f"{title}: {shows}" if title and shows else title or shows
        legend = ax.get_legend()
        names = [t.get_text() for t in legend.get_texts() if t.get_text()] if legend else []
        if names:
            text = f"{text}. Series: {', '.join(names)}" if text else f"Series: {', '.join(names)}"
        if text:
            sentences.append(text)
    return ". ".join(s.rstrip(".") for s in sentences) + "." if sentences else "Chart."


def money_axis(axis) -> None:
    """Tick labels of ``axis`` as money in the report's currency ("$1,200", "1,200 CHF"), its label with the
    code ("revenue (USD)")."""
    if axis.get_label_text() and not axis.get_label_text().endswith(")"):
        axis.set_label_text(_money_label(axis.get_label_text()))
    axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: _money(v, ",.0f" if v == round(v) else ",.2f")))


def monthly_lines(frame: pd.DataFrame, y: str, hue: str | None = None, title: str = "",
                  ylabel: str = "", money: bool = False):
    """Lines over ``month``, one per ``hue`` value."""
    fig, ax = plt.subplots()
    palette = {v: category_color(v) for v in frame[hue].unique()} if hue else None
    sns.lineplot(data=frame, x="month", y=y, hue=hue, palette=palette, marker="o", markersize=4, ax=ax)
    ax.set(title=title, xlabel="", ylabel=ylabel)
    if money:
        money_axis(ax.yaxis)
    if hue:
        ax.legend(title=None, ncols=min(6, frame[hue].nunique()), loc="upper center", bbox_to_anchor=(0.5, -0.15))
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def funnel_bars(frame: pd.DataFrame, title: str = "From lead to repeat customer"):
    """Horizontal bars for ``stage``/``count`` with the step conversion written on each bar."""
    fig, ax = plt.subplots(figsize=(9, 0.8 + 0.7 * len(frame)))
    sns.barplot(data=frame, y="stage", x="count", color=PALETTE[0], ax=ax)
    for i, row in enumerate(frame.itertuples()):
        share = "" if pd.isna(row.share_of_previous) else f"  ({row.share_of_previous:.0%} of previous)"
        ax.text(row.count, i, f" {row.count:,}{share}", va="center")
    ax.set(title=title, xlabel="", ylabel="")
    ax.xaxis.set_major_formatter(mticker.StrMethodFormatter("{x:,.0f}"))
    ax.set_xlim(0, frame["count"].max() * 1.35)
    fig.tight_layout()
    return fig


def _cohort_label(ts, period: str) -> str:
    """A cohort's start as a label for its period; other row labels (segments) as they are."""
    if not isinstance(ts, pd.Timestamp):
        return str(ts)
    return {"week": f"{ts:%Y-%m-%d}", "month": f"{ts:%Y-%m}", "quarter": f"{ts.year}-Q{ts.quarter}"}[period]


HEATMAP_ROWS = 36


def retention_heatmap(matrix: pd.DataFrame, sizes: pd.Series, period: str, title: str = "",
                      fmt: str = ".0%"):
    """Cohort × age heatmap; rows labelled with the cohort and its size, empty cells not yet elapsed. At
    most ``HEATMAP_ROWS`` cohorts, the most recent (weekly cohorts over two years would be a 3,500 px chart);
    the title says so."""
    if len(matrix) > HEATMAP_ROWS:
        title = f"{title} (the {HEATMAP_ROWS} most recent of {len(matrix)} cohorts)".lstrip()
        matrix = matrix.iloc[-HEATMAP_ROWS:]
    labels = [f"{_cohort_label(c, period)}  (n={sizes.get(c, 0):,})" for c in matrix.index]
    # cells just wide enough for "100%" and high enough for a line of 8 pt
    fig, ax = plt.subplots(figsize=(min(2.2 + 0.55 * matrix.shape[1], 11), 1.2 + 0.27 * len(matrix)))
    later = matrix.iloc[:, 1:] if matrix.shape[1] > 1 else matrix  # age 0 is 100% by definition: it would
    vmax = float(np.nanmax(later.to_numpy())) if later.notna().any().any() else None  # pale everything else
    with warnings.catch_warnings():  # a matrix left empty by min_cell_size: seaborn warns, the page shows it
        warnings.simplefilter("ignore", RuntimeWarning)
        sns.heatmap(matrix.set_axis(labels), annot=True, fmt=fmt, cmap="Blues", cbar=False, ax=ax, vmax=vmax,
                    annot_kws={"size": 8}, linewidths=0.5, linecolor="white")
    for text in ax.texts:  # the numbers sit inside the cells: the layout need not measure hundreds of them
        text.set_in_layout(False)
    ax.set(title=title, xlabel=f"{period}s since conversion", ylabel="")
    ax.grid(False)  # the style's grid would show through the cells not yet elapsed
    fig.pco_png_scale = HEATMAP_PNG_SCALE
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return fig


def cohort_curves(matrix: pd.DataFrame, period: str, title: str = "", ylabel: str = "", percent: bool = True,
                  last: int = 8, legend: str = "cohort", money: bool = False):
    """One line per row of ``matrix`` over age: the ``last`` most recent cohorts, or segments."""
    fig, ax = plt.subplots()
    shown = matrix.dropna(how="all").tail(last)
    colors = (PALETTE * 4 if legend == "cohort"  # cohorts are told apart, not ranked: distinct colours
              else [category_color(name) for name in shown.index])
    for color, (cohort, row) in zip(colors, shown.iterrows()):
        ax.plot(row.index, row.values, marker="o", markersize=3, color=color, label=_cohort_label(cohort, period))
    ax.set(title=title, xlabel=f"{period}s since conversion", ylabel=ylabel)
    if percent:
        ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0, decimals=0))
    if money:
        money_axis(ax.yaxis)
    ax.legend(title=legend, loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def change_plot(fitted: pd.DataFrame, change_date, change_name: str, days: int):
    """Weekly conversion cohorts' retention around a change, with the segmented-regression fit."""
    fig, ax = plt.subplots()
    ax.scatter(fitted.cohort, fitted.retention, s=10 + 60 * fitted.customers / fitted.customers.max(),
               color=PALETTE[5], alpha=0.6, label="weekly cohort")
    for after, color in [(0, PALETTE[0]), (1, PALETTE[1])]:
        part = fitted[fitted.after == after]
        ax.plot(part.cohort, part.fitted, color=color, linewidth=2.5,
                label="trend before" if after == 0 else "after the change")
    ax.axvline(pd.Timestamp(change_date), color=PALETTE[4], linestyle="--", linewidth=1)
    ax.text(pd.Timestamp(change_date), ax.get_ylim()[1], f" {change_name}", va="top", color=PALETTE[4])
    ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0, decimals=0))
    ax.set(title=f"Retention at day {days} by conversion week", xlabel="", ylabel=f"active again within {days} days")
    ax.legend(loc="lower right")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def forest(effects: pd.DataFrame, labels: dict[str, str] | None = None, title: str = "Relative lift vs control",
           alpha: float = 0.05):
    """Relative lifts with their intervals, one row per metric (and arm); a line at no effect."""
    rows = effects.reset_index(drop=True)
    names = [f"{(labels or {}).get(r.metric, r.metric)}" + (f" ({r.variant})" if rows.variant.nunique() > 1 else "")
             for r in rows.itertuples()]
    fig, ax = plt.subplots(figsize=(9, 0.8 + 0.55 * len(rows)))
    y = list(range(len(rows)))[::-1]
    # significance on the scale drawn: the relative lift's own test
    p = next(rows[c] for c in ("relative_p_value_adjusted", "relative_p_value", "p_value_adjusted", "p_value")
             if c in rows)
    outcome = np.where(p >= alpha, "not significant", np.where(rows.relative > 0, "better", "worse"))
    drawn = set()
    for yi, kind, r in zip(y, outcome, rows.itertuples()):
        ax.errorbar([r.relative], [yi], xerr=[[r.relative - r.relative_ci_low], [r.relative_ci_high - r.relative]],
                    fmt="o", color=LIFT_COLORS[kind], elinewidth=2, capsize=4,
                    label=LIFT_LABELS[kind] if kind not in drawn else None)
        drawn.add(kind)
    ax.axvline(0, color="#333", linewidth=1)
    ax.set_yticks(y, names)
    ax.xaxis.set_major_formatter(mticker.PercentFormatter(1.0, decimals=0))
    ax.set(title=title, xlabel=f"relative change vs control, {1 - alpha:.0%} interval")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


LIFT_COLORS = {"better": "#1a7f37", "worse": "#cf222e", "not significant": "#8c959f"}  # green, red, grey
LIFT_LABELS = {"better": "better (significant)", "worse": "worse (significant)", "not significant": "not significant"}


def cumulative_effect(frame: pd.DataFrame, label: str, percent: bool = False):
    """The cumulative effect by assignment week with the fixed-sample interval (dark band) and the
    always-valid interval (light band)."""
    fig, ax = plt.subplots()
    for variant, part in frame.groupby("variant"):
        color = category_color(variant)
        ax.fill_between(part.week, part.seq_ci_low, part.seq_ci_high, color=color, alpha=0.12,
                        label="always-valid interval")
        ax.fill_between(part.week, part.ci_low, part.ci_high, color=color, alpha=0.25, label="95% interval")
        ax.plot(part.week, part.effect, color=color, marker="o", markersize=3, label=f"{variant} − control")
    ax.axhline(0, color="#333", linewidth=1)
    settled = frame[frame.week > frame.week.min() + pd.Timedelta(days=14)]  # the first weeks' bands are huge
    if len(settled):
        low, high = min(settled.seq_ci_low.min(), 0), max(settled.seq_ci_high.max(), 0)
        ax.set_ylim(low - 0.1 * (high - low), high + 0.1 * (high - low))
    if percent:  # a difference of two shares is in percentage points
        ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v * 100:+.0f} pts" if v else "0"))
    ax.set(title=f"Cumulative effect on {label.lower()}", xlabel="customers assigned up to",
           ylabel="difference from control" + (" (percentage points)" if percent else ""))
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def _last_change(curves: pd.DataFrame, horizon: int | None) -> float | None:
    """Where a survival chart can end: 10% after the day the last curve reaches its final value (None: the
    whole range, when that is near the end anyway)."""
    final = curves.groupby("segment", sort=False).survival.transform("last")
    settled = curves.days.where(curves.survival.eq(final)).groupby(curves.segment, sort=False).min().max()
    end = max(float(settled) * 1.1, float(horizon or 0) * 1.05)
    return end if 0 < end < 0.7 * float(curves.days.max()) else None


def survival_curves(curves: pd.DataFrame, title: str = "Still active", xlabel: str = "days",
                    horizon: int | None = None, ylabel: str = "still active"):
    """Kaplan–Meier step curves with their bands, one per ``segment`` (from ``SurvivalCurves.curves()``).
    The axis ends soon after the last change of any curve: a flat tail shows nothing (leads, say, convert in
    the first weeks or not at all)."""
    fig, ax = plt.subplots()
    for name, part in curves.groupby("segment", sort=False):
        color = category_color(name)
        ax.step(part.days, part.survival, where="post", color=color, label=str(name), linewidth=2)
        ax.fill_between(part.days, part.ci_low, part.ci_high, step="post", color=color, alpha=0.15, linewidth=0)
    if horizon:
        ax.axvline(horizon, color="#57606a", linestyle=":", linewidth=1)
    ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0, decimals=0))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, ylim=(0, 1.02), xlim=(0, _last_change(curves, horizon)))
    if curves.segment.nunique() > 1:
        ax.legend(loc="lower left")  # survival starts high at the left: that corner stays empty
    fig.tight_layout()
    return fig


def hazard_ratios(summary: pd.DataFrame, title: str = "Hazard ratios (> 1: churns faster than the reference)"):
    """Forest plot of Cox hazard ratios with intervals on a log scale; a line at no effect."""
    rows = summary.reset_index(drop=True)
    names = [f"{r.covariate}: {r.level}" + (f" vs {r.reference}" if r.reference else "") for r in rows.itertuples()]
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.45 * len(rows)))
    y = list(range(len(rows)))[::-1]
    for yi, r in zip(y, rows.itertuples()):
        color = PALETTE[0] if r.p_value < 0.05 else PALETTE[5]
        ax.errorbar([r.hazard_ratio], [yi], xerr=[[r.hazard_ratio - r.ci_low], [r.ci_high - r.hazard_ratio]],
                    fmt="o", color=color, elinewidth=2, capsize=4)
    ax.axvline(1, color="#333", linewidth=1)
    ax.set_xscale("log")
    low, high = min(rows.ci_low.min(), 0.9), max(rows.ci_high.max(), 1.1)
    ticks = [t for t in (0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 1, 1.1, 1.25, 1.5, 2, 3, 5, 10) if low <= t <= high]
    ax.set_xlim(low / 1.05, high * 1.05)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    ax.set_yticks(y, names)
    ax.set(title=title, xlabel="hazard ratio (log scale)")
    fig.tight_layout()
    return fig


def risk_histogram(probabilities: pd.Series, within_days: int):
    """Distribution of the predicted chance of churning in the next ``within_days`` days."""
    fig, ax = plt.subplots()
    sns.histplot(probabilities, bins=40, color=PALETTE[0], ax=ax)
    ax.xaxis.set_major_formatter(mticker.PercentFormatter(1.0, decimals=0))
    ax.set(title=f"Active customers by chance of churning in the next {within_days} days",
           xlabel="predicted chance of churning", ylabel="customers")
    fig.tight_layout()
    return fig


def score_trend(frame: pd.DataFrame, x: str = "period", y: str = "nps", low: str = "nps_ci_low",
                high: str = "nps_ci_high", title: str = "Net Promoter Score by month", ylabel: str = "NPS"):
    """A score over time with its 95% band (suppressed periods are gaps)."""
    fig, ax = plt.subplots()
    ax.plot(frame[x], frame[y], marker="o", markersize=4, color=PALETTE[0])
    ax.fill_between(frame[x], frame[low], frame[high], color=PALETTE[0], alpha=0.15, linewidth=0)
    ax.axhline(0, color="#333", linewidth=0.8)
    ax.set(title=title, xlabel="", ylabel=ylabel)
    if frame[high].max() <= 1:
        ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0, decimals=0))
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def category_mix(frame: pd.DataFrame, label: str = "segment", title: str = "Promoters, passives and detractors"):
    """Stacked horizontal bars of the promoter / passive / detractor shares per group, NPS written beside."""
    rows = frame.dropna(subset=["nps"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.5 * len(rows)))
    left = pd.Series(0.0, index=rows.index)
    for share, name in [("promoter_share", "promoters"), ("passive_share", "passives"),
                        ("detractor_share", "detractors")]:
        color = category_color(name)
        ax.barh(rows[label].astype(str), rows[share], left=left, color=color, label=name)
        left += rows[share]
    for i, r in rows.iterrows():
        ax.text(1.01, i, f"NPS {r.nps:+.0f}", va="center")
    ax.xaxis.set_major_formatter(mticker.PercentFormatter(1.0, decimals=0))
    ax.set(title=title, xlim=(0, 1.15), xlabel="")
    ax.invert_yaxis()
    ax.legend(ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
    fig.tight_layout()
    return fig


def value_histogram(values: pd.Series, title: str = "Customers by expected value"):
    """Distribution of per-customer expected value, on a log-scaled axis (value is heavily skewed)."""
    positive = values[values > 0]
    fig, ax = plt.subplots()
    bins = np.geomspace(max(positive.min(), 0.01), positive.max(), 40) if len(positive) else 10
    ax.hist(positive, bins=bins, color=PALETTE[0])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: _money(v) if v >= 1 else _money(v, "g")))
    ax.axvline(values.mean(), color=PALETTE[1], linestyle="--", label=f"mean {_money(values.mean())}")
    ax.set(title=title, xlabel=f"{_money_label('expected value')}, log scale", ylabel="customers")
    ax.legend()
    fig.tight_layout()
    return fig


def actual_vs_predicted(by_frequency: pd.DataFrame, title: str = "Holdout purchases: actual vs predicted"):
    """Mean actual and predicted holdout purchases per calibration frequency (Fader, Hardie & Lee 2005, fig. 3)."""
    rows = by_frequency.dropna(subset=["actual", "predicted"])
    long = rows.melt(id_vars="frequency", value_vars=["actual", "predicted"], var_name="", value_name="purchases")
    fig, ax = plt.subplots()
    sns.barplot(data=long, x="frequency", y="purchases", hue="", palette=[PALETTE[5], PALETTE[0]], ax=ax)
    ax.set(title=title, xlabel="purchases in the calibration period (repeat)", ylabel="mean purchases in the holdout")
    ax.legend(title=None)
    fig.tight_layout()
    return fig


def value_concentration(deciles: pd.DataFrame, title: str = "How value is concentrated"):
    """Cumulative share of value by decile of customers (most valuable first), against equal shares."""
    fig, ax = plt.subplots()
    x = [0.0] + list(deciles.decile / 10)
    y = [0.0] + list(deciles.cumulative_share)
    ax.plot(x, y, marker="o", color=PALETTE[0], label="customers ranked by value")
    ax.plot([0, 1], [0, 1], color="#57606a", linestyle=":", label="equal value")
    ax.xaxis.set_major_formatter(mticker.PercentFormatter(1.0, decimals=0))
    ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0, decimals=0))
    ax.set(title=title, xlabel="share of customers (most valuable first)", ylabel="share of expected value")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def retention_projection(contractual: pd.DataFrame, horizon: int = 36,
                         title: str = "Subscriptions: observed and projected"):
    """Per plan, the observed share still subscribed after each 30-day period and the sBG projection."""
    from scipy import special

    fig, ax = plt.subplots()
    t = range(horizon + 1)
    for r in contractual.itertuples():
        color = category_color(r.plan)
        ax.plot(range(len(r.curve)), r.curve, "o", color=color, markersize=4)
        fitted = [float(np.exp(special.betaln(r.alpha, r.beta + k) - special.betaln(r.alpha, r.beta))) for k in t]
        ax.plot(list(t), fitted, color=color, label=f"{r.plan} (sBG α={r.alpha:.2f}, β={r.beta:.2f})")
    ax.axvline(len(contractual.curve.iloc[0]) - 1, color="#57606a", linestyle=":", linewidth=1)
    ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0, decimals=0))
    ax.set(title=title, xlabel="periods of 30 days since the start (dots: observed; lines: model)",
           ylabel="still subscribed", ylim=(0, 1.02))
    ax.legend()
    fig.tight_layout()
    return fig


def stage_bars(stages: pd.DataFrame, title: str = "Customers by lifecycle stage"):
    """Horizontal bars of customers per stage (suppressed stages left out), count and share written on each."""
    rows = stages.dropna(subset=["customers"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.5 * len(rows)))
    ax.barh(rows.stage.str.replace("_", " "), rows.customers, color=PALETTE[0])
    for i, r in rows.iterrows():
        ax.text(r.customers, i, f" {r.customers:,.0f} ({r.share:.0%})", va="center")
    ax.invert_yaxis()
    ax.set_xlim(0, rows.customers.max() * 1.3)
    ax.xaxis.set_major_formatter(mticker.StrMethodFormatter("{x:,.0f}"))
    ax.set(title=title, xlabel="customers")
    fig.tight_layout()
    return fig


def share_heatmap(shares: pd.DataFrame, title: str, xlabel: str = "", ylabel: str = "", fmt: str = ".0%",
                  cmap: str = "Blues"):
    """A labelled heatmap of a small matrix (row shares of a transition matrix, an RFM grid); NaN cells blank."""
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.45 * len(shares)))
    sns.heatmap(shares, annot=True, fmt=fmt, cmap=cmap, cbar=False, linewidths=0.5, ax=ax,
                xticklabels=[str(c).replace("_", " ") for c in shares.columns],
                yticklabels=[str(i).replace("_", " ") for i in shares.index])
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.tick_params(axis="y", rotation=0)
    fig.tight_layout()
    return fig


def gap_ranges(gaps: pd.DataFrame, title: str = "Days between purchases"):
    """Per segment the middle half of the gaps between purchases (bar from the 1st to the 3rd quartile), the
    median (dot) and the recommended contact day (triangle)."""
    rows = gaps.dropna(subset=["median_days"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.5 * len(rows)))
    y = range(len(rows))
    ax.barh(list(y), rows.q3_days - rows.q1_days, left=rows.q1_days, color=PALETTE[0], alpha=0.35,
            label="middle half of gaps")
    ax.plot(rows.median_days, list(y), "o", color=PALETTE[0], label="median gap")
    ax.plot(rows.contact_day, list(y), "v", color=PALETTE[1], markersize=9, label="contact day")
    ax.set_yticks(list(y), rows.segment.astype(str))
    ax.invert_yaxis()
    ax.set(title=title, xlabel="days after the previous purchase")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def calibration(table: pd.DataFrame, title: str = "Lookalike model: predicted vs observed"):
    """Mean predicted probability vs observed rate per decile of prediction, against the diagonal."""
    rows = table.dropna(subset=["mean_predicted", "observed_rate"])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    top = max(rows.mean_predicted.max(), rows.observed_rate.max(), 0.05) * 1.1
    ax.plot([0, top], [0, top], color="#57606a", linestyle=":")
    ax.plot(rows.mean_predicted, rows.observed_rate, "o-", color=PALETTE[0])
    ax.xaxis.set_major_formatter(mticker.PercentFormatter(1.0, decimals=0))
    ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0, decimals=0))
    ax.set(title=title, xlabel="predicted", ylabel="observed", xlim=(0, top), ylim=(0, top))
    fig.tight_layout()
    return fig
