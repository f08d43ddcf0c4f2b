"""The sample business: a synthetic but coherent shop whose true parameters are known.

Observed from 2024-10-01 to 2026-09-30 (UTC). Customers convert from leads of five acquisition channels;
conversion = first order. What happens next follows textbook models, so reports can be checked against
the truth written to ``truth.json``:

- **Repeat orders**: the MBG/NBD variant of BG/NBD (Batislam, Denizel & Filiztekin 2007; Fader, Hardie & Lee
  2005 for BG/NBD), time unit weeks: unlike BG/NBD, a customer can drop out right after the first order, so
  fit ``pco_lib.stats.models.ModifiedBGNBD`` to recover the truth. Per customer λ ~ Gamma(r, rate α)
  and p ~ Beta(a, b), parameters by channel. While alive, orders arrive as a Poisson(λ) process; after
  each order (the first included) the customer drops out with probability p.
- **Spend**: Gamma-Gamma. Per customer ν ~ Gamma(q, rate γ); each order's revenue ~ Gamma(p, rate ν), so
  the population mean order value is p·γ/(q − 1).
- **Personalized onboarding** (2025-10-01): customers converting on or after it have their dropout p
  multiplied by ``onboarding_change.dropout_multiplier``.
- **Satisfaction**: every customer has an NPS category (promoter, passive, detractor) drawn up front; it
  multiplies both p and the subscription churn θ (``nps.multipliers``). About 30% answer a survey 20–40 days
  after converting.
- **Subscriptions**: ~30% subscribe at conversion; per plan a shifted-beta-geometric model: θ ~ Beta(α, β)
  per customer, the subscription lasts a Geometric(θ) number of 30-day periods; still running at the
  end → ended_at empty. α, β are θ's before the NPS multiplier, so an sBG fit on the data converges to
  the mix's nearest sBG, not to them (premium: β ≈ 5.1 for 5.5 on twelve periods).
- **Events**: logins, feature use and e-mail opens while the customer is alive (Poisson).
- **Experiments** (assigned at conversion, customers converting in the experiment's window):
  ``onboarding_email`` has a real effect (treatment: λ × 1.3, p × 0.8, θ × 0.8); ``checkout_copy`` is an
  A/A test; ``pricing_page`` has a sample ratio mismatch (a logging bug drops 20% of treatment assignments;
  those customers behave normally).

truth.json keys: ``seed``, ``customers``, ``observed_from``, ``observed_until``, ``time_unit``,
``channels`` {name: share, lead_conversion_rate, lead_delay_days, bgnbd {r, alpha, a, b}},
``gamma_gamma`` {p, q, gamma, mean_order_value}, ``onboarding_change`` {date, dropout_multiplier,
true_effect_repeat_30d, true_effect_repeat_90d, note}, ``subscriptions`` {share, period_days, plans {name:
{share, mrr, sbg_alpha, sbg_beta}}, true_lifetimes {plan: {survival {days: S}, median_days, rmst_365d}}},
``nps`` {category_shares, multipliers, response_rate}, ``experiments``
{id: {window, planned_weights, logging_loss, lambda_multiplier, dropout_multiplier,
churn_probability_multiplier, true_effect_repeat_30d, ...}}, ``counts`` {table: rows}.

A *true effect on repeat within W days* is the difference in P(at least one order in the W days after
conversion, besides the first) between otherwise identical customers, averaged over the channel and NPS mix;
computed exactly per draw and averaged over 400,000 draws with common random numbers.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

OBSERVED_FROM = np.datetime64("2024-10-01T00:00:00", "us")
OBSERVED_UNTIL = np.datetime64("2026-09-30T23:59:59", "us")
DAY = 86_400.0
WEEK = 7 * DAY
SPAN = float((OBSERVED_UNTIL - OBSERVED_FROM) / np.timedelta64(1, "s"))
CHUNK = 100_000

CHANNELS = {  # share of customers, lead conversion rate, mean lead-to-customer delay (days), BG/NBD
    "organic": dict(share=0.30, lead_conversion_rate=0.12, lead_delay_days=5.0,
                    bgnbd=dict(r=1.4, alpha=5.0, a=0.7, b=4.5)),
    "paid_search": dict(share=0.25, lead_conversion_rate=0.06, lead_delay_days=3.0,
                        bgnbd=dict(r=1.1, alpha=5.5, a=0.9, b=3.5)),
    "social": dict(share=0.20, lead_conversion_rate=0.04, lead_delay_days=8.0,
                   bgnbd=dict(r=0.9, alpha=6.0, a=1.0, b=3.0)),
    "referral": dict(share=0.15, lead_conversion_rate=0.15, lead_delay_days=4.0,
                     bgnbd=dict(r=1.5, alpha=4.5, a=0.6, b=5.0)),
    "email": dict(share=0.10, lead_conversion_rate=0.10, lead_delay_days=6.0,
                  bgnbd=dict(r=1.2, alpha=5.0, a=0.8, b=4.0)),
}
GAMMA_GAMMA = dict(p=6.0, q=4.0, gamma=15.0)
COUNTRIES = {"US": 0.40, "GB": 0.20, "DE": 0.18, "FR": 0.12, "NL": 0.10}
DEVICES = {"desktop": 0.45, "mobile": 0.45, "tablet": 0.10}
CHANGE_DATE = np.datetime64("2025-10-01T00:00:00", "us")
CHANGE_DROPOUT_MULTIPLIER = 0.6
NPS_SHARES = {"promoter": 0.45, "passive": 0.30, "detractor": 0.25}
NPS_MULTIPLIERS = {"promoter": 0.8, "passive": 1.0, "detractor": 1.5}
NPS_RESPONSE_RATE = 0.30
SUBSCRIPTION_SHARE = 0.30
PERIOD_DAYS = 30
PLANS = {
    "basic": dict(share=0.50, mrr=9.0, sbg_alpha=1.0, sbg_beta=3.0),
    "pro": dict(share=0.35, mrr=29.0, sbg_alpha=0.8, sbg_beta=4.0),
    "premium": dict(share=0.15, mrr=79.0, sbg_alpha=0.7, sbg_beta=5.5),
}
EVENT_RATES = {"login": 0.25, "feature_use": 0.15, "email_open": 0.10}  # per week while alive
EXPERIMENTS = {
    "onboarding_email": dict(window=("2026-02-01", "2026-06-30"), planned_weights={"control": 0.5, "treatment": 0.5},
                             logging_loss=0.0, lambda_multiplier=1.3, dropout_multiplier=0.8,
                             churn_probability_multiplier=0.8),
    "checkout_copy": dict(window=("2026-02-01", "2026-06-30"), planned_weights={"control": 0.5, "treatment": 0.5},
                          logging_loss=0.0, lambda_multiplier=1.0, dropout_multiplier=1.0,
                          churn_probability_multiplier=1.0),
    "pricing_page": dict(window=("2025-02-01", "2025-06-30"), planned_weights={"control": 0.5, "treatment": 0.5},
                         logging_loss=0.20, lambda_multiplier=1.0, dropout_multiplier=1.0,
                         churn_probability_multiplier=1.0),
}

TS = pa.timestamp("us", tz="UTC")
SCHEMAS = {
    "customers": pa.schema([("customer_id", pa.string()), ("converted_at", TS), ("channel", pa.string()),
                            ("country", pa.string()), ("device", pa.string()), ("email", pa.string()),
                            ("lead_id", pa.string())]),
    "orders": pa.schema([("order_id", pa.string()), ("customer_id", pa.string()), ("ordered_at", TS),
                         ("revenue", pa.float64())]),
    "subscriptions": pa.schema([("subscription_id", pa.string()), ("customer_id", pa.string()),
                                ("started_at", TS), ("ended_at", TS), ("plan", pa.string()),
                                ("mrr", pa.float64())]),
    "events": pa.schema([("customer_id", pa.string()), ("occurred_at", TS), ("event", pa.string())]),
    "assignments": pa.schema([("experiment_id", pa.string()), ("customer_id", pa.string()),
                              ("variant", pa.string()), ("assigned_at", TS)]),
    "experiments": pa.schema([("experiment_id", pa.string()), ("variant", pa.string()), ("weight", pa.float64()),
                              ("is_control", pa.bool_())]),
    "surveys": pa.schema([("customer_id", pa.string()), ("answered_at", TS), ("nps", pa.int64()),
                          ("csat", pa.int64())]),
    "leads": pa.schema([("lead_id", pa.string()), ("created_at", TS), ("source", pa.string()),
                        ("customer_id", pa.string())]),
}


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _seconds_to_ts(seconds: np.ndarray) -> pa.Array:
    """Seconds after OBSERVED_FROM → Arrow UTC timestamps (microseconds)."""
    us = OBSERVED_FROM.astype("int64") + np.round(np.asarray(seconds) * 1e6).astype("int64")
    return pa.array(us, type=pa.int64()).cast(TS)


def _seconds_of(date: str | np.datetime64) -> float:
    return float((np.datetime64(date, "us") - OBSERVED_FROM) / np.timedelta64(1, "s"))


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    return pa.array(np.char.add(prefix, np.char.zfill(numbers.astype(str), width)))


def _choice(rng, options: dict, n: int) -> np.ndarray:
    keys = list(options)
    shares = np.array([options[k] if not isinstance(options[k], dict) else options[k]["share"] for k in keys])
    return rng.choice(len(keys), size=n, p=shares / shares.sum())


def _conversion_density() -> np.ndarray:
    """Share of conversions per day: growth over the two years, yearly and weekly seasonality."""
    days = np.arange(int(np.ceil(SPAN / DAY)))
    growth = 1.0 + 0.8 * days / days[-1]
    yearly = 1.0 + 0.15 * np.sin(2 * np.pi * (days - 30) / 365.25)
    weekday = (days + 1) % 7  # 2024-10-01 was a Tuesday; 5, 6 = Saturday, Sunday
    weekly = np.where(weekday >= 5, 0.8, 1.0)
    w = growth * yearly * weekly
    return w / w.sum()


def _draw_times(rng, n: int, density: np.ndarray) -> np.ndarray:
    day = rng.choice(len(density), size=n, p=density)
    return np.minimum(day * DAY + rng.uniform(0, DAY, n), SPAN)


def _writer_set(folder: Path) -> dict[str, pq.ParquetWriter]:
    return {name: pq.ParquetWriter(folder / f"{name}.parquet", schema) for name, schema in SCHEMAS.items()}


# --------------------------------------------------------------------------------------------------
# One chunk of customers
# --------------------------------------------------------------------------------------------------


def _chunk(rng, first: int, n: int, density: np.ndarray, counters: dict) -> dict[str, pa.Table]:
    t_conv = np.sort(_draw_times(rng, n, density))
    idx = np.arange(first, first + n)
    customer_ids = _ids("C", idx, 7)
    channel_names = list(CHANNELS)
    channel = _choice(rng, CHANNELS, n)
    country = _choice(rng, COUNTRIES, n)
    device = _choice(rng, DEVICES, n)

    # Leads: every customer came from one; non-converting leads in proportion to each channel's rate.
    delay = rng.exponential([CHANNELS[channel_names[c]]["lead_delay_days"] * DAY for c in channel])
    lead_created = np.maximum(t_conv - delay, 0.0)
    conv_rate = np.array([CHANNELS[c]["lead_conversion_rate"] for c in channel_names])
    n_lost = rng.poisson(np.bincount(channel, minlength=len(channel_names)) * (1 - conv_rate) / conv_rate)
    lost_channel = np.repeat(np.arange(len(channel_names)), n_lost)
    lost_created = _draw_times(rng, len(lost_channel), density)
    n_leads = n + len(lost_channel)
    lead_numbers = counters["lead"] + rng.permutation(n_leads)
    counters["lead"] += n_leads
    cust_lead_ids = _ids("L", lead_numbers[:n], 8)

    # Behavioural draws.
    nps_cat = _choice(rng, NPS_SHARES, n)
    nps_mult = np.array(list(NPS_MULTIPLIERS.values()))[nps_cat]
    bg = np.array([[CHANNELS[c]["bgnbd"][k] for k in ("r", "alpha", "a", "b")] for c in channel_names])[channel]
    lam = rng.gamma(bg[:, 0], 1.0 / bg[:, 1])  # per week
    p = rng.beta(bg[:, 2], bg[:, 3])
    p = p * np.where(t_conv >= _seconds_of(CHANGE_DATE), CHANGE_DROPOUT_MULTIPLIER, 1.0) * nps_mult
    churn_mult = nps_mult.copy()

    # Experiments.
    assignment_parts = []
    for exp_id, spec in EXPERIMENTS.items():
        lo, hi = _seconds_of(spec["window"][0]), _seconds_of(spec["window"][1]) + DAY
        inside = np.flatnonzero((t_conv >= lo) & (t_conv < hi))
        treated = rng.uniform(size=len(inside)) < spec["planned_weights"]["treatment"]
        lam[inside[treated]] *= spec["lambda_multiplier"]
        p[inside[treated]] *= spec["dropout_multiplier"]
        churn_mult[inside[treated]] *= spec["churn_probability_multiplier"]
        logged = ~(treated & (rng.uniform(size=len(inside)) < spec["logging_loss"]))
        rows = inside[logged]
        assignment_parts.append(pa.table({
            "experiment_id": pa.array([exp_id] * len(rows), pa.string()),
            "customer_id": customer_ids.take(pa.array(rows)),
            "variant": pa.array(np.where(treated[logged], "treatment", "control")),
            "assigned_at": _seconds_to_ts(t_conv[rows]),
        }, schema=SCHEMAS["assignments"]))
    p = np.clip(p, 1e-6, 1.0)

    # Orders: extra purchases before dropout N ~ Geometric(p) − 1; Poisson count M in the horizon; the
    # observed extra orders are the first min(N, M) of M uniform order statistics on the horizon.
    horizon = (SPAN - t_conv) / WEEK
    n_before_death = rng.geometric(p) - 1
    m = rng.poisson(lam * horizon)
    k = np.minimum(n_before_death, m)
    owner = np.repeat(np.arange(n), k)
    gaps = rng.exponential(1.0, size=owner.size)
    before = np.concatenate([[0.0], np.cumsum(gaps)])  # before[i]: sum of the gaps ahead of gap i
    ends = np.cumsum(k)
    starts = ends - k
    s_i = before[1:] - np.repeat(before[starts], k)  # each customer's running sum of gaps
    s_k = before[ends] - before[starts]  # each customer's total (0 without extra orders)
    total = s_k + rng.gamma(np.maximum(m - k, 0) + 1.0, 1.0)
    t_extra = t_conv[owner] + horizon[owner] * WEEK * s_i / total[owner]
    t_extra = np.minimum(t_extra, SPAN)
    died = n_before_death <= m
    alive_until = np.where(died, np.where(k > 0, s_k / total * horizon * WEEK + t_conv, t_conv), SPAN)
    alive_until = np.minimum(np.maximum(alive_until, t_conv), SPAN)

    order_owner = np.concatenate([np.arange(n), owner])
    order_time = np.concatenate([t_conv, t_extra])
    sort = np.lexsort((order_time, order_owner))
    order_owner, order_time = order_owner[sort], order_time[sort]
    gg = GAMMA_GAMMA
    nu = rng.gamma(gg["q"], 1.0 / gg["gamma"], size=n)
    revenue = np.round(rng.gamma(gg["p"], 1.0 / nu[order_owner]), 2)
    order_numbers = np.arange(counters["order"], counters["order"] + order_owner.size)
    counters["order"] += order_owner.size

    # Subscriptions (sBG per plan).
    subscribed = np.flatnonzero(rng.uniform(size=n) < SUBSCRIPTION_SHARE)
    plan = _choice(rng, PLANS, subscribed.size)
    plan_names = list(PLANS)
    sbg = np.array([[PLANS[k]["sbg_alpha"], PLANS[k]["sbg_beta"]] for k in plan_names])[plan]
    theta = np.clip(rng.beta(sbg[:, 0], sbg[:, 1]) * churn_mult[subscribed], 1e-6, 1.0)
    periods = rng.geometric(theta)
    sub_start = t_conv[subscribed]
    sub_end = sub_start + periods * PERIOD_DAYS * DAY
    sub_numbers = np.arange(counters["subscription"], counters["subscription"] + subscribed.size)
    counters["subscription"] += subscribed.size
    ended = pa.array(np.where(sub_end <= SPAN, 0, 1).astype(bool))
    ended_at = pc.if_else(ended, pa.scalar(None, TS), _seconds_to_ts(np.minimum(sub_end, SPAN)))

    # Events while alive.
    alive_weeks = (alive_until - t_conv) / WEEK + 1.0 / 7  # at least the day of conversion
    n_events = rng.poisson(sum(EVENT_RATES.values()) * alive_weeks)
    ev_owner = np.repeat(np.arange(n), n_events)
    ev_time = np.minimum(t_conv[ev_owner] + rng.uniform(size=ev_owner.size) * alive_weeks[ev_owner] * WEEK, SPAN)
    ev_kind = _choice(rng, EVENT_RATES, ev_owner.size)
    ev_sort = np.lexsort((ev_time, ev_owner))

    # Surveys.
    answer_at = t_conv + rng.uniform(20, 40, n) * DAY
    answered = np.flatnonzero((rng.uniform(size=n) < NPS_RESPONSE_RATE) & (answer_at <= SPAN))
    cat = nps_cat[answered]
    score = np.select(
        [cat == 0, cat == 1],
        [rng.choice([9, 10], answered.size, p=[0.45, 0.55]), rng.choice([7, 8], answered.size)],
        rng.choice(7, answered.size, p=[0.04, 0.04, 0.06, 0.1, 0.14, 0.26, 0.36]),
    )
    csat = np.select([cat == 0, cat == 1], [rng.choice([4, 5], answered.size, p=[0.3, 0.7]),
                                            rng.choice([3, 4], answered.size)],
                     rng.choice([1, 2, 3], answered.size, p=[0.3, 0.4, 0.3]))
    csat_missing = rng.uniform(size=answered.size) < 0.1

    lead_ids_lost = _ids("L", lead_numbers[n:], 8)
    return {
        "customers": pa.table({
            "customer_id": customer_ids, "converted_at": _seconds_to_ts(t_conv),
            "channel": pa.array(np.array(channel_names)[channel]),
            "country": pa.array(np.array(list(COUNTRIES))[country]),
            "device": pa.array(np.array(list(DEVICES))[device]),
            "email": pa.array(np.char.add(np.char.lower(np.array(customer_ids.to_pylist(), dtype=str)),
                                          "@example.com")),
            "lead_id": cust_lead_ids,
        }, schema=SCHEMAS["customers"]),
        "orders": pa.table({
            "order_id": _ids("O", order_numbers, 9), "customer_id": customer_ids.take(pa.array(order_owner)),
            "ordered_at": _seconds_to_ts(order_time), "revenue": pa.array(revenue),
        }, schema=SCHEMAS["orders"]),
        "subscriptions": pa.table({
            "subscription_id": _ids("S", sub_numbers, 8), "customer_id": customer_ids.take(pa.array(subscribed)),
            "started_at": _seconds_to_ts(sub_start), "ended_at": ended_at,
            "plan": pa.array(np.array(plan_names)[plan]), "mrr": pa.array(np.array(
                [PLANS[k]["mrr"] for k in plan_names])[plan]),
        }, schema=SCHEMAS["subscriptions"]),
        "events": pa.table({
            "customer_id": customer_ids.take(pa.array(ev_owner[ev_sort])),
            "occurred_at": _seconds_to_ts(ev_time[ev_sort]),
            "event": pa.array(np.array(list(EVENT_RATES))[ev_kind[ev_sort]]),
        }, schema=SCHEMAS["events"]),
        "assignments": pa.concat_tables(assignment_parts),
        "surveys": pa.table({
            "customer_id": customer_ids.take(pa.array(answered)), "answered_at": _seconds_to_ts(answer_at[answered]),
            "nps": pa.array(score.astype("int64")),
            "csat": pa.array(csat.astype("int64"), mask=csat_missing),
        }, schema=SCHEMAS["surveys"]),
        "leads": pa.table({
            "lead_id": pa.concat_arrays([cust_lead_ids, lead_ids_lost]),
            "created_at": _seconds_to_ts(np.concatenate([lead_created, lost_created])),
            "source": pa.array(np.concatenate([np.array(channel_names)[channel],
                                               np.array(channel_names, dtype=object)[lost_channel].astype(str)])),
            "customer_id": pa.concat_arrays([customer_ids, pa.nulls(len(lost_channel), pa.string())]),
        }, schema=SCHEMAS["leads"]),
    }


# --------------------------------------------------------------------------------------------------
# Truth
# --------------------------------------------------------------------------------------------------


@functools.cache  # the same draws for every sample (0.09 s each, ~20 per truth.json)
def _repeat_probability(days: float, lam_mult: float, p_mult: float, draws: int = 400_000,
                        seed: int = 20_241_001) -> float:
    """P(at least one order besides the first within ``days`` of conversion), averaged over the channel
    and NPS mix: per draw exactly (1 − p)(1 − exp(−λ·days/7)), with common random numbers (same seed)."""
    rng = np.random.default_rng(seed)
    weights = {c: v["share"] for c, v in CHANNELS.items()}
    names = list(CHANNELS)
    ch = rng.choice(len(names), draws, p=np.array([weights[c] for c in names]) / sum(weights.values()))
    bg = np.array([[CHANNELS[c]["bgnbd"][k] for k in ("r", "alpha", "a", "b")] for c in names])[ch]
    lam = rng.gamma(bg[:, 0], 1.0 / bg[:, 1]) * lam_mult
    nps = np.array(list(NPS_MULTIPLIERS.values()))[_choice(rng, NPS_SHARES, draws)]
    p = np.clip(rng.beta(bg[:, 2], bg[:, 3]) * nps * p_mult, 1e-6, 1.0)
    return float(np.mean((1 - p) * (1 - np.exp(-lam * days / 7))))


@functools.cache  # the same for every sample: callers copy the result
def _subscription_truth(horizons=(30, 90, 180, 365), rmst_days: int = 365) -> dict:
    """Exact survival of a subscription per plan, averaged over the NPS mix (outside experiment arms).

    A subscription lasts K ~ Geometric(θ') periods of 30 days with θ' = min(m·θ, 1), θ ~ Beta(α, β) and m the
    NPS multiplier, so S(d) = P(K > k) = E[(1 − θ')^k] with k = ⌊d/30⌋ (see :func:`_beta_survival`).
    """
    def survival(plan: dict, k: int) -> float:
        return sum(share * _beta_survival(plan["sbg_alpha"], plan["sbg_beta"], NPS_MULTIPLIERS[cat], k)
                   for cat, share in NPS_SHARES.items())

    whole = rmst_days // PERIOD_DAYS
    out = {}
    for name, plan in PLANS.items():
        periods = [survival(plan, k) for k in range(max(whole, *(d // PERIOD_DAYS for d in horizons)) + 1)]
        median_k = next((k for k, v in enumerate(periods) if v <= 0.5), None)
        out[name] = {
            "survival": {str(d): periods[d // PERIOD_DAYS] for d in horizons},
            "median_days": median_k * PERIOD_DAYS if median_k is not None else None,
            f"rmst_{rmst_days}d": PERIOD_DAYS * sum(periods[:whole])
            + (rmst_days - whole * PERIOD_DAYS) * periods[whole],
        }
    return out


def _beta_survival(alpha: float, beta: float, m: float, k: int) -> float:
    """E[(1 − min(m·θ, 1))^k] for θ ~ Beta(α, β), in closed form: 1 for k = 0, else the integral over
    θ < c = min(1, 1/m), where (1 − mθ)^k = Σ_j C(k, j)(−m)^j θ^j and
    E[θ^j; θ < c] = B(α + j, β)/B(α, β) · I_c(α + j, β) (I: the regularized incomplete beta function). Each
    term is at most C(k, j) (mθ ≤ 1 there), so for the k ≤ 12 used the sum keeps ~12 digits."""
    from math import comb

    from scipy.special import betainc

    if k == 0:
        return 1.0
    c = min(1.0, 1.0 / m)
    total, moment = 0.0, 1.0  # moment = B(α + j, β)/B(α, β) = Π_{i<j} (α + i)/(α + β + i)
    for j in range(k + 1):
        total += comb(k, j) * (-m) ** j * moment * float(betainc(alpha + j, beta, c))
        moment *= (alpha + j) / (alpha + beta + j)
    return total


def _truth(seed: int, customers: int, counts: dict) -> dict:
    change = CHANGE_DROPOUT_MULTIPLIER
    experiments = {}
    for exp_id, spec in EXPERIMENTS.items():
        lm, dm = spec["lambda_multiplier"], spec["dropout_multiplier"]
        after_change = np.datetime64(spec["window"][0]) >= CHANGE_DATE.astype("datetime64[D]")
        base_p = change if after_change else 1.0
        effect = (_repeat_probability(30, lm, base_p * dm) - _repeat_probability(30, 1.0, base_p)
                  if (lm, dm) != (1.0, 1.0) else 0.0)
        experiments[exp_id] = {**spec, "window": list(spec["window"]), "true_effect_repeat_30d": effect,
                               "control_repeat_30d": _repeat_probability(30, 1.0, base_p),
                               "churn_note": "treatment multiplies the subscription churn probability θ and the "
                                             "BG/NBD dropout p by the multipliers above"}
    return {
        "seed": seed,
        "customers": customers,
        "observed_from": str(OBSERVED_FROM.astype("datetime64[s]")) + "Z",
        "observed_until": str(OBSERVED_UNTIL.astype("datetime64[s]")) + "Z",
        "time_unit": "week",
        "channels": CHANNELS,
        "gamma_gamma": {**GAMMA_GAMMA,
                        "mean_order_value": GAMMA_GAMMA["p"] * GAMMA_GAMMA["gamma"] / (GAMMA_GAMMA["q"] - 1)},
        "onboarding_change": {
            "name": "personalized onboarding",
            "date": str(CHANGE_DATE.astype("datetime64[D]")),
            "dropout_multiplier": change,
            "true_effect_repeat_30d": _repeat_probability(30, 1, change) - _repeat_probability(30, 1, 1),
            "true_effect_repeat_90d": _repeat_probability(90, 1, change) - _repeat_probability(90, 1, 1),
            "note": "no experiment assigns customers converting 2025-07-01 to 2026-01-31, so cohorts around "
                    "the change differ only by the change",
        },
        "subscriptions": {"share": SUBSCRIPTION_SHARE, "period_days": PERIOD_DAYS, "plans": PLANS,
                          "true_lifetimes": copy.deepcopy(_subscription_truth()),
                          "true_lifetimes_note": "per plan, for customers outside experiment treatment arms: "
                                                 "survival at 30/90/180/365 days, median lifetime and RMST "
                                                 "over 365 days, exact under the sBG model and the NPS mix"},
        "nps": {"category_shares": NPS_SHARES, "multipliers": NPS_MULTIPLIERS, "response_rate": NPS_RESPONSE_RATE,
                "categories": {"promoter": "9-10", "passive": "7-8", "detractor": "0-6"}},
        "experiments": experiments,
        "counts": counts,
    }


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def generate_sample(out_dir, customers: int = 20_000, seed: int = 0, progress: bool | None = None) -> dict:
    """Write the eight canonical tables as Parquet into ``out_dir`` plus truth.json; return the truth.

    Deterministic for a seed. Written into a temporary folder and moved into place at the end, so a crash
    never leaves a half-written sample.
    """
    from tqdm.auto import tqdm

    if customers < 1:
        raise ValueError("customers must be at least 1")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        writers = _writer_set(staging)
        counts = dict.fromkeys(SCHEMAS, 0)
        density = _conversion_density()
        n_chunks = -(-customers // CHUNK)
        seeds = np.random.SeedSequence(seed).spawn(n_chunks)
        counters = {"lead": 0, "order": 0, "subscription": 0}
        show = sys.stderr.isatty() if progress is None else progress
        for i in tqdm(range(n_chunks), desc="customers", unit="chunk", disable=not show):
            first = i * CHUNK
            tables = _chunk(np.random.default_rng(seeds[i]), first, min(CHUNK, customers - first), density,
                            counters)
            for name, table in tables.items():
                writers[name].write_table(table)
                counts[name] += table.num_rows
        experiments = pa.table({
            "experiment_id": [e for e, s in EXPERIMENTS.items() for _ in s["planned_weights"]],
            "variant": [v for s in EXPERIMENTS.values() for v in s["planned_weights"]],
            "weight": [w for s in EXPERIMENTS.values() for w in s["planned_weights"].values()],
            "is_control": [v == "control" for s in EXPERIMENTS.values() for v in s["planned_weights"]],
        }, schema=SCHEMAS["experiments"])
        writers["experiments"].write_table(experiments)
        counts["experiments"] = experiments.num_rows
        for w in writers.values():
            w.close()
        truth = _truth(seed, customers, counts)
        (staging / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.rename(out_dir, old)
            os.rename(staging, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, out_dir)
        return truth
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
