"""Figures in one house style (seaborn/matplotlib). Functions take tidy frames and return the Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import pandas as pd
import seaborn as sns

PALETTE = ["#0969da", "#e16f24", "#1a7f37", "#8250df", "#cf222e", "#57606a", "#bf8700", "#1b7c83"]


def use_style() -> None:
    """The house style: white grid, readable sizes, one palette."""
    sns.set_theme(style="whitegrid", palette=PALETTE, rc={
        "figure.figsize": (9, 4), "figure.dpi": 100, "axes.titlesize": 13, "axes.titleweight": "bold",
        "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
    })


def monthly_lines(frame: pd.DataFrame, y: str, hue: str | None = None, title: str = "",
                  ylabel: str = "", money: bool = False):
    """Lines over ``month``, one per ``hue`` value."""
    fig, ax = plt.subplots()
    sns.lineplot(data=frame, x="month", y=y, hue=hue, marker="o", markersize=4, ax=ax)
    ax.set(title=title, xlabel="", ylabel=ylabel)
    if money:
        ax.yaxis.set_major_formatter(mticker.StrMethodFormatter("{x:,.0f}"))
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
