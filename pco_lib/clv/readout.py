"""The ``clv`` report's readout: RFM summary → purchase model (BG/NBD, MBG/NBD or Pareto/NBD) and
Gamma-Gamma → per-customer value, holdout validation, value segments, the simple formula and subscription
value; plus the summary points and headline keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.currencies import money
from ..data.source import MISSING
from ..stats.models.base import DAYS_PER_MONTH, DAYS_PER_YEAR, ClvError
from ..stats.models.bgnbd import BGNBD
from ..stats.models.gamma_gamma import GammaGamma
from ..stats.models.mbgnbd import ModifiedBGNBD
from ..stats.models.pareto_nbd import ParetoNBD
from ..stats.models.value import customer_value
from .engine import _day, _order_period, _per_customer_frame, rfm_table
from .validation import HoldoutValidation, validate_holdout
from .value import SimpleClv, ValueSegments, simple_clv, subscription_value, value_segments

TIME_UNITS = {"day": 1.0, "week": 7.0, "month": DAYS_PER_MONTH}
MODELS = {"bgnbd": BGNBD, "mbgnbd": ModifiedBGNBD, "pareto": ParetoNBD}


@dataclass(frozen=True, repr=False)
class ClvReadout:
    """Everything the CLV report shows."""

    model: BGNBD | ParetoNBD
    gamma_gamma: GammaGamma
    values: pd.DataFrame  # per customer: customer_id, p_alive, expected_purchases, expected_spend, clv, segment
    validation: HoldoutValidation | None
    segments: ValueSegments
    simple: SimpleClv
    contractual: pd.DataFrame | None
    model_name: str
    horizon_days: int
    time_unit: str
    discount_rate: float
    segment: str | None
    as_of: str
    notes: tuple[str, ...] = ()
    zero_revenue_orders: int = 0  # orders with revenue 0 (kept as purchases, left out of spend)
    zero_spend_customers: int = 0  # repeat customers whose repeat purchases are all $0: not in the spend model
    customers_without_orders: int = 0  # in the customers table, never ordered: not in the purchase model
    # the model asked the simple formula's question: mean expected revenue per customer over its years as a
    # customer, undiscounted (E[purchases over those years] × E[spend]); puts the two figures side by side
    model_over_simple_years: float = float("nan")


def analyze(source, model: str = "bgnbd", horizon_days: int = 365, time_unit: str = "week",
            discount_rate: float = 0.1, calibration_end: str = "", holdout_days: int = 182,
            segment: str | None = "channel", min_cell_size: int = 10) -> ClvReadout:
    """Fit the purchase model and Gamma-Gamma on all orders up to the last order day and value every customer
    over ``horizon_days``; validate the same model on a calibration/holdout split (``calibration_end``,
    default ``holdout_days`` before the last order day); value segments, the simple formula and, when there
    are subscriptions, the contractual (sBG) value per plan.

    Edge cases of real data: $0 orders are purchases but not spend (see :func:`~pco_lib.clv.rfm_expr`),
    customers without orders have no first purchase and are left out of the purchase model; both are
    counted (:func:`data_coverage`). Windows longer than the data: ``holdout_days`` that leaves no
    calibration period (the last order day − holdout_days on or before the first order day) is shortened to
    half the days between the first and the last order day, with a note (and ``parameters_used``); a
    ``calibration_end`` on or before the first order day is a :class:`ClvError` (the user chose the date);
    one on or after the last order day leaves the model unvalidated, with a note."""
    if model not in MODELS:
        raise ClvError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
    if time_unit not in TIME_UNITS:
        raise ClvError(f"time_unit must be one of {', '.join(TIME_UNITS)}, not {time_unit!r}")
    unit = TIME_UNITS[time_unit]
    o = source.table("orders")
    orders = o.select("customer_id", "ordered_at", "revenue")
    first, as_of = _order_period(o)
    notes = []
    if calibration_end:
        cal_end = pd.Timestamp(_day(calibration_end, "calibration_end"))
        if cal_end <= first:
            raise ClvError(f"calibration_end {cal_end:%Y-%m-%d} is on or before the first order day "
                           f"({first:%Y-%m-%d}): nothing to calibrate on; choose a date after it and before the last "
                           f"order day ({as_of:%Y-%m-%d}), or leave calibration_end empty")
    else:
        cal_end = as_of - pd.Timedelta(days=holdout_days)
        if cal_end <= first:
            span = (as_of - first).days
            cal_end = as_of - pd.Timedelta(days=span // 2)
            notes.append(f"holdout_days ({holdout_days}) is not shorter than the {span} days from the first to the "
                         f"last order day, which would leave nothing to calibrate on; the holdout used is the last "
                         f"{span // 2} days (half the data), after {cal_end:%Y-%m-%d}")
    validation = None
    if cal_end >= as_of:
        notes.append(f"calibration_end {cal_end:%Y-%m-%d} leaves no holdout before the last order "
                     f"({as_of:%Y-%m-%d}); the model is not validated")
    else:
        # the page shows the aggregates: the per-customer table is not kept (see HoldoutValidation)
        validation = validate_holdout(orders, cal_end, as_of, time_unit_days=unit, model=MODELS[model](),
                                      min_cell_size=min_cell_size, per_customer=False)
        if calibration_end and validation.holdout_days != holdout_days:
            notes.append(f"the holdout is the {validation.holdout_days} days from calibration_end "
                         f"{validation.calibration_end} to the last order day ({validation.holdout_end}); the "
                         f"holdout_days parameter ({holdout_days}) applies only when calibration_end is empty")
    c = source.table("customers")
    categories = [segment] if segment else []
    if segment and segment not in c.columns:
        raise ClvError(f"customers has no column {segment!r}; its columns are {', '.join(c.columns)}")
    per = rfm_table(orders, as_of, unit, per_customer=True)
    if categories:  # the segment of per's rows, one column added (a merge of per itself copies the frame)
        profile = _per_customer_frame(c.select(customer_id=c.customer_id.cast("string"), _segment=c[segment]))
        merged = per[["customer_id"]].merge(profile, on="customer_id", how="left")
        per[segment] = merged["_segment"].astype("string").fillna(MISSING).array
        del profile, merged
    # the distinct (x, t_x, T) rows of the purchase model from this frame, not a second pass of the engine
    # over the orders (the same rows and counts as rfm_table(orders, as_of, unit); 15 s at 1M customers)
    rows = per.groupby(["frequency", "recency", "T"], as_index=False).size().rename(columns={"size": "count"})
    rows.attrs = dict(per.attrs)
    fitted = MODELS[model]().fit_rfm(rows)
    paid = per.spend_frequency.to_numpy() > 0  # $0 repeat purchases are not spend (rfm_expr)
    if paid.sum() < 2:
        raise ClvError("fewer than two customers with a repeat purchase of revenue > 0: spend per order cannot be "
                       "modelled")
    gg = GammaGamma().fit(per.spend_frequency.to_numpy()[paid], per.monetary.to_numpy()[paid])
    never = c.anti_join(orders, c.customer_id.cast("string") == orders.customer_id.cast("string")).count()
    coverage = dict(zero_revenue_orders=int(per.zero_revenue_orders.sum()),
                    zero_spend_customers=int(((per.frequency > 0) & (per.spend_frequency == 0)).sum()),
                    customers_without_orders=int(never.to_pandas()))
    values = customer_value(fitted, gg, per, horizon_days=horizon_days, discount_rate_per_year=discount_rate)
    if categories:
        values[segment] = per[segment].array
    simple = simple_clv(per, fitted, by=segment or None, min_cell_size=min_cell_size)
    del per  # values has what is left to do; at 10M customers the frame is ~1 GB
    # one row per customer in the values' order (no join in value_segments); the columns are not copied
    profile = pd.DataFrame({"customer_id": values.customer_id.array, "purchases": values.frequency.to_numpy() + 1,
                            "monetary": values.monetary.array, **{col: values[col].array for col in categories}})
    segments = value_segments(values, profile, categories=categories, measures=["purchases", "monetary"],
                              min_cell_size=min_cell_size)
    del profile
    years = float(simple.table.years_as_customer.iloc[0])
    purchases = fitted.expected_purchases(years * DAYS_PER_YEAR / unit, values.frequency.to_numpy(),
                                          values.recency.to_numpy(), values["T"].to_numpy())
    same_question = float(np.mean(np.asarray(purchases, dtype="float64") * values.expected_spend.to_numpy()))
    contractual = None
    if source.has("subscriptions"):
        subs = source.table("subscriptions").to_pandas()
        contractual = subscription_value(subs, as_of + pd.Timedelta(days=1), discount_rate)
        if contractual.empty:
            notes.append("no plan has enough subscriptions observed for 12 periods to fit the contractual model")
            contractual = None
    return ClvReadout(fitted, gg, values, validation, segments, simple, contractual, model, horizon_days, time_unit,
                      discount_rate, segment or None, f"{as_of:%Y-%m-%d}", tuple(notes), **coverage,
                      model_over_simple_years=same_question)


def data_coverage(readout: ClvReadout) -> str:
    """One Markdown sentence (two with customers without orders) on what the models leave out: the $0
    orders (purchases for frequency and recency, not spend) and the repeat customers left out of the spend
    model because all their repeat purchases were $0; the customers who never ordered (no first purchase,
    so not in the purchase model)."""
    r = readout
    spend = int(r.gamma_gamma.n_)
    if r.zero_revenue_orders == 0:
        text = f"No order has zero revenue: the spend model has all {spend:,} customers with a repeat purchase."
    else:
        z, left = r.zero_revenue_orders, r.zero_spend_customers
        who = ("no repeat customer is left out of the spend model because of them" if left == 0 else
               f"{left:,} repeat {'customer' if left == 1 else 'customers'} whose repeat purchases all had zero "
               "revenue "
               f"{'is' if left == 1 else 'are'} left out of the spend model")
        text = (f"{z:,} {'order has' if z == 1 else 'orders have'} zero revenue: they count as purchases "
                f"(frequency and recency) but not as spend; {who} ({spend:,} customers are in it).")
    if r.customers_without_orders:
        n = r.customers_without_orders
        text += (f" {n:,} {'customer has' if n == 1 else 'customers have'} no orders: without a first purchase "
                 f"{'it is' if n == 1 else 'they are'} left out of the purchase model and valued at nothing here.")
    return text


def _parameter_table(fits) -> pd.DataFrame:
    parts = []
    for name, fitted in fits:
        s = fitted.summary.copy()
        s.insert(0, "parameter", [str(i) for i in s.index])
        parts.append(s.assign(model=name)[["model", "parameter", "coef", "se(coef)"]])
    return pd.concat(parts, ignore_index=True)


def _calibration_fits(readout: ClvReadout) -> list[tuple[str, object]]:
    val = readout.validation
    if val is None:
        return []
    return [(readout.model_name, val.model)] + ([("gamma_gamma", val.gamma_gamma)] if val.gamma_gamma else [])


def model_parameters(readout: ClvReadout) -> pd.DataFrame:
    """Fitted parameters with standard errors of the purchase model and Gamma-Gamma, for the report."""
    return _parameter_table(((readout.model_name, readout.model), ("gamma_gamma", readout.gamma_gamma)))


def calibration_parameters(readout: ClvReadout) -> pd.DataFrame | None:
    """Parameters with standard errors of the calibration fits (purchase model and Gamma-Gamma on the orders
    up to ``calibration_end``, the models the holdout validation checks), in the columns of
    :func:`model_parameters`; None without a holdout."""
    fits = _calibration_fits(readout)
    return _parameter_table(fits) if fits else None


def validation_period(readout: ClvReadout) -> str:
    """One Markdown sentence for the holdout section: the calibration period, the customers and the
    log-likelihoods of the calibration fits, and the holdout length actually used."""
    val = readout.validation
    if val is None:
        return "No holdout period: the model is not validated."
    lls = "; ".join(f"{fitted._model} {fitted.log_likelihood_:,.1f}" for _, fitted in _calibration_fits(readout))
    return (f"Calibration: the orders of **{val.n_customers:,}** customers from {val.calibration_start} to "
            f"**{val.calibration_end}** (log-likelihood {lls}). Holdout: the **{val.holdout_days} days** after "
            f"the calibration end, to {val.holdout_end}.")


def _simple_vs_model(readout: ClvReadout, horizon: str) -> str:
    """Why the back-of-the-envelope figure and the model's differ: another question (a whole lifetime from
    the first order, undiscounted, at today's buying rate) — and the model's answer to that same question."""
    s = readout.simple.table.iloc[0]
    mean = readout.values.clv.mean()
    ratio = s.value / mean if mean > 0 else float("nan")
    times = f"{ratio:.1f}× the model's {money(mean)} " if np.isfinite(ratio) and ratio >= 1.5 else ""
    text = (f"It is {times}because it asks another question: a whole expected lifetime of "
            f"{s.years_as_customer:.1f} years from the first order, undiscounted, at the average customer's "
            f"buying rate so far; the model values each customer from today, over the next {horizon}, "
            "discounted, knowing who has probably stopped buying.")
    if np.isfinite(readout.model_over_simple_years):
        text += (f" Asked the formula's question (the next {s.years_as_customer:.1f} years, undiscounted), the "
                 f"model expects {money(readout.model_over_simple_years)} per customer.")
    return text


def summary_points(readout: ClvReadout) -> list[str]:
    """Plain-language bullet points for the top of the CLV report."""
    v = readout.values
    years = readout.horizon_days / DAYS_PER_YEAR
    horizon = ("year" if round(years) == 1 else f"{years:.0f} years") if abs(years - round(years)) < 0.05 \
        else f"{readout.horizon_days} days"
    points = [f"An average customer is worth **{money(v.clv.mean(), ',.2f')}** in revenue over the next {horizon} "
              f"(discounted at {readout.discount_rate:.0%} a year): {v.expected_purchases.mean():.2f} expected "
              f"purchases at {money(v.expected_spend.mean(), ',.2f')} each. All {len(v):,} customers together: "
              f"{money(v.clv.sum())}."]
    seg = readout.segments
    points.append(f"Value is concentrated: the top {seg.top_share:.0%} of customers hold "
                  f"**{seg.top_value_share:.0%}** of the expected value; {(v.p_alive < 0.5).mean():.0%} of "
                  "customers are more likely gone than still buying.")
    if readout.segment and len(seg.categories):
        cat = seg.categories.dropna(subset=["top_share", "rest_share"])
        if len(cat):
            lift = cat.assign(diff=cat.top_share - cat.rest_share).sort_values("diff", ascending=False).iloc[0]
            points.append(f"The most valuable customers come more often from {readout.segment} "
                          f"**{lift.category}** ({lift.top_share:.0%} of the top group vs {lift.rest_share:.0%} "
                          "of the rest).")
    val = readout.validation
    if val is not None:
        quality = "close" if abs(val.relative_error) < 0.1 else "rough"
        points.append(f"Checked on the last {val.holdout_days} days (after {val.calibration_end}), held out from "
                      f"the fit: the model predicted "
                      f"{val.predicted_purchases:,.0f} purchases against {val.actual_purchases:,} actual "
                      f"({val.relative_error:+.0%}, a {quality} fit; mean error per customer "
                      f"{val.mae:.2f} purchases).")
    s = readout.simple.table.iloc[0]
    points.append(f"Back of the envelope: {money(s.aov, ',.2f')} per order × {s.orders_per_year:.2f} orders a year × "
                  f"{s.years_as_customer:.1f} years ≈ {money(s.value)} per customer. "
                  f"{_simple_vs_model(readout, horizon)}")
    if readout.contractual is not None:
        best = readout.contractual.sort_values("value", ascending=False).iloc[0]
        points.append(f"Subscriptions: a new **{best.plan}** subscriber is worth about {money(best.value)} "
                      f"({best.payments:.1f} discounted payments of {money(best.monthly_revenue)}); "
                      f"{best.projected_24:.0%} are projected to still subscribe after two years.")
    points += [f"Note: {n}" for n in readout.notes]
    return points


def headlines(readout: ClvReadout) -> tuple[list[tuple], dict]:
    """Headline cards and results.json values: ``mean_clv``, ``total_clv``, ``top20_share``, ``parameters``
    {model: {name: value}}, ``log_likelihood`` {model: value}, ``time_unit_days``; with a holdout, ``holdout``
    ``data`` {zero_revenue_orders, zero_spend_customers (repeat customers whose repeat purchases are all $0,
    left out of the spend model), customers_without_orders, spend_model_customers, purchase_model_customers},
    ``notes`` (list of sentences), ``simple`` {value, years_as_customer, model_same_question (the model's mean
    undiscounted revenue per customer over those years)}; with a holdout, ``holdout``
    {mae, relative_error, actual, predicted, brier_purchase} and ``validation`` {calibration_start,
    calibration_end, holdout_end, holdout_days (the length used: holdout_end − calibration_end),
    calibration_fit {customers, parameters {model: {name: value}}, standard_errors {model: {name: value}},
    log_likelihood {model: value}}} — the fits on the calibration period that the holdout checks, the purchase
    model under its name and gamma_gamma, in the fitted time unit; with subscriptions, ``contractual``
    {plan: {value, payments, alpha, beta}}."""
    v = readout.values
    cards = [("mean_clv", float(v.clv.mean()), f"Mean CLV, {readout.horizon_days} days", "$,.2f"),
             ("total_clv", float(v.clv.sum()), "Total CLV", "$,.0f"),
             ("top20_share", readout.segments.top_value_share, "Value held by the top 20%", ".0%")]
    hidden = {
        "parameters": {readout.model_name: {k: float(x) for k, x in readout.model.params_.items()},
                       "gamma_gamma": {k: float(x) for k, x in readout.gamma_gamma.params_.items()}},
        "log_likelihood": {readout.model_name: float(readout.model.log_likelihood_),
                           "gamma_gamma": float(readout.gamma_gamma.log_likelihood_)},
        "time_unit_days": TIME_UNITS[readout.time_unit],
        "data.zero_revenue_orders": readout.zero_revenue_orders,
        "data.zero_spend_customers": readout.zero_spend_customers,
        "data.customers_without_orders": readout.customers_without_orders,
        "data.spend_model_customers": int(readout.gamma_gamma.n_),
        "data.purchase_model_customers": len(readout.values),
        "notes": list(readout.notes),
        "simple.value": float(readout.simple.table.value.iloc[0]),
        "simple.years_as_customer": float(readout.simple.table.years_as_customer.iloc[0]),
        "simple.model_same_question": readout.model_over_simple_years,
    }
    val = readout.validation
    if val is not None:
        cards.append(("holdout.relative_error", val.relative_error, "Holdout error (purchases)", "+.0%"))
        hidden |= {"holdout.mae": val.mae, "holdout.actual": val.actual_purchases,
                   "holdout.predicted": val.predicted_purchases, "holdout.brier_purchase": val.brier_purchase}
        fits = _calibration_fits(readout)
        hidden |= {
            "validation.calibration_start": val.calibration_start,
            "validation.calibration_end": val.calibration_end,
            "validation.holdout_end": val.holdout_end,
            "validation.holdout_days": val.holdout_days,
            "parameters_used.holdout_days": val.holdout_days,  # the header shows it beside the one given
            "validation.calibration_fit": {
                "customers": val.n_customers,
                "parameters": {name: {k: float(x) for k, x in f.params_.items()} for name, f in fits},
                "standard_errors": {name: {k: float(x) for k, x in f.summary["se(coef)"].items()}
                                    for name, f in fits},
                "log_likelihood": {name: float(f.log_likelihood_) for name, f in fits},
            },
        }
    if readout.contractual is not None:
        hidden["contractual"] = {r.plan: {"value": r.value, "payments": r.payments, "alpha": r.alpha,
                                          "beta": r.beta} for r in readout.contractual.itertuples()}
    return cards, hidden
