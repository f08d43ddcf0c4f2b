"""The hand-written DuckDB SQL floor of each engine step: the smallest query that computes the same numbers
directly on the Parquet files (no views, no Ibis), run through duckdb's Python API. The benchmarks check
each one equals pco's result, so the definitions below mirror pco's exactly:

- timestamps are stored as TIMESTAMPTZ; pco reads them as naive UTC, from their microseconds
  (``make_timestamp(epoch_us(…))``: 10× faster than ``timezone('UTC', …)``, the same values), so calendar
  days and months are UTC ones;
- "until" (the end of the data) is the latest conversion or order, as pco takes it;
- $0 orders are orders (they count as activity and purchases) and add 0 to revenue; the CLV spend leaves
  repeat purchase days with $0 out (x⁺), and revenue is summed as DECIMAL(38, 6) as pco does.

Ids are used as stored (pco also turns blank ids into NULL; the sample has none).
"""

from pathlib import Path

import duckdb

DAY = 86_400


def connect() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def run(con: duckdb.DuckDBPyConnection, sql: str):
    return con.sql(sql).df()


def _utc(column: str) -> str:
    """A stored TIMESTAMPTZ as naive UTC, as pco's typed views read it (source.naive_utc_sql)."""
    return f"make_timestamp(epoch_us({column}))"


def _file(sample: Path, name: str) -> str:
    return f"read_parquet('{sample / name}.parquet')"


def monthly_revenue(sample: Path) -> str:
    """overview.monthly_revenue: orders, revenue and customers per UTC month; complete = the month ended by
    the day of the last order."""
    return f"""
        WITH m AS (SELECT date_trunc('month', {_utc('ordered_at')}) AS month, count(*) AS orders,
                          sum(revenue) AS revenue, count(DISTINCT customer_id) AS customers,
                          max({_utc('ordered_at')}) AS last
                   FROM {_file(sample, 'orders')} GROUP BY month),
             d AS (SELECT CASE WHEN max(last) = date_trunc('day', max(last)) THEN max(last)
                               ELSE date_trunc('day', max(last)) + INTERVAL 1 DAY END AS last_day FROM m)
        SELECT month, orders, revenue, customers, revenue / orders AS revenue_per_order,
               month + INTERVAL 1 MONTH <= last_day AS complete
        FROM m, d ORDER BY month"""


def cohort_cells(sample: Path, period_days: int = 30) -> str:
    """cohorts.summarize_cohorts (month cohorts, order activity): per cohort the size and last conversion;
    per cohort × age (age = ⌊(order − conversion) / 30 days⌋ ≥ 0) active customers, orders and revenue, and
    whether the age has elapsed for the cohort's last member."""
    length = period_days * DAY
    return f"""
        WITH c AS (SELECT customer_id, {_utc('converted_at')} AS converted_at
                   FROM {_file(sample, 'customers')}),
             o AS (SELECT customer_id, {_utc('ordered_at')} AS ts, revenue FROM {_file(sample, 'orders')}),
             u AS (SELECT greatest((SELECT max(converted_at) FROM c), (SELECT max(ts) FROM o)) AS until),
             cohort AS (SELECT customer_id, converted_at, date_trunc('month', converted_at) AS cohort
                        FROM c, u WHERE converted_at <= until),
             sizes AS (SELECT cohort, count(*) AS customers, max(converted_at) AS last_conversion
                       FROM cohort GROUP BY cohort),
             counts AS (SELECT cohort, floor((epoch(ts) - epoch(converted_at)) / {length})::BIGINT AS age,
                               count(DISTINCT customer_id) AS active, count(*) AS orders, sum(revenue) AS revenue
                        FROM o JOIN cohort USING (customer_id), u
                        WHERE ts <= until AND ts >= converted_at GROUP BY cohort, age)
        SELECT cohort, age, customers, active, orders, revenue,
               age < floor((epoch(until) - epoch(last_conversion)) / {length}) AS elapsed
        FROM counts JOIN sizes USING (cohort), u ORDER BY cohort, age"""


def noncontractual_lifetimes(sample: Path, inactivity_days: int = 90) -> str:
    """churn.summarize_lifetimes('non_contractual', orders, by channel and device): distinct (days, churned,
    channel, device) with counts. Churned when the last activity (the conversion counts) is at least
    ``inactivity_days`` before until; days = ⌊end − conversion⌋ + 1 with end = last activity if churned,
    else until."""
    return f"""
        WITH c AS (SELECT customer_id, {_utc('converted_at')} AS converted_at,
                          coalesce(channel, '(missing)') AS channel, coalesce(device, '(missing)') AS device
                   FROM {_file(sample, 'customers')}),
             last AS (SELECT customer_id, max({_utc('ordered_at')}) AS last_at
                      FROM {_file(sample, 'orders')} GROUP BY customer_id),
             u AS (SELECT greatest((SELECT max(converted_at) FROM c), (SELECT max(last_at) FROM last)) AS until),
             r AS (SELECT converted_at, channel, device, until,
                          greatest(converted_at, coalesce(last_at, converted_at)) AS last_at
                   FROM c LEFT JOIN last USING (customer_id), u WHERE converted_at <= until),
             q AS (SELECT *, epoch(until) - epoch(last_at) >= {inactivity_days * DAY} AS quiet FROM r)
        SELECT floor((epoch(CASE WHEN quiet THEN last_at ELSE until END) - epoch(converted_at)) / {DAY})::BIGINT + 1
                   AS days, quiet::BIGINT AS churned, channel, device, count(*) AS n
        FROM q GROUP BY ALL ORDER BY days, churned, channel, device"""


def experiment_arms(sample: Path, experiment_id: str, window_days: int = 30, lookback_days: int = 7) -> str:
    """experiments.summarize_experiment: per arm, assigned customers and, over the customers whose window has
    elapsed (assigned_at + window ≤ last order), the sums, sums of squares and CUPED cross-products of
    repeat, retained, revenue and orders (orders in (assigned_at, assigned_at + window]; retained = an order
    or event in its last ``lookback_days``; pre = revenue of orders at or before assignment)."""
    start = window_days - min(lookback_days, window_days)
    metrics = ["repeat", "retained", "revenue", "orders"]
    sums = ",\n".join(f"sum({m}) AS {m}_sum, sum({m} * {m}) AS {m}_sumsq, sum({m} * pre) AS {m}_pre_sum"
                      for m in metrics)
    window = f"INTERVAL {window_days} DAY"
    return f"""
        WITH a AS (SELECT customer_id, variant, {_utc('assigned_at')} AS assigned_at
                   FROM {_file(sample, 'assignments')} WHERE experiment_id = '{experiment_id}'),
             o AS (SELECT customer_id, {_utc('ordered_at')} AS ts, revenue FROM {_file(sample, 'orders')}),
             mature AS (SELECT * FROM a WHERE assigned_at + {window} <= (SELECT max(ts) FROM o)),
             activity AS (SELECT customer_id, ts FROM o UNION ALL
                          SELECT customer_id, {_utc('occurred_at')} FROM {_file(sample, 'events')}),
             retained AS (SELECT DISTINCT customer_id FROM mature JOIN activity USING (customer_id)
                          WHERE ts > assigned_at + INTERVAL {start} DAY AND ts <= assigned_at + {window}),
             per AS (SELECT variant, customer_id,
                            count(*) FILTER (ts > assigned_at AND ts <= assigned_at + {window})::DOUBLE AS orders,
                            coalesce(sum(revenue) FILTER (ts > assigned_at AND ts <= assigned_at + {window}), 0)
                                AS revenue,
                            coalesce(sum(revenue) FILTER (ts <= assigned_at), 0) AS pre
                     FROM mature LEFT JOIN o USING (customer_id) GROUP BY variant, customer_id),
             full_per AS (SELECT *, (orders > 0)::DOUBLE AS repeat,
                                 (customer_id IN (SELECT customer_id FROM retained))::DOUBLE AS retained
                          FROM per),
             arms AS (SELECT variant, count(*) AS n, {sums}, sum(pre) AS pre_sum, sum(pre * pre) AS pre_sumsq,
                             sum(revenue * orders) AS revenue_orders_sum
                      FROM full_per GROUP BY variant),
             sizes AS (SELECT variant, count(*) AS assigned, min(assigned_at) AS first_assigned FROM a GROUP BY variant)
        SELECT * FROM sizes LEFT JOIN arms USING (variant) ORDER BY variant"""


def _order_days(sample: Path, end: str) -> str:
    return f"""SELECT customer_id, CAST({_utc('ordered_at')} AS DATE) AS day,
                      sum(revenue::DECIMAL(38, 6)) AS revenue, count(*) FILTER (revenue = 0) AS zero_orders
               FROM {_file(sample, 'orders')} WHERE CAST({_utc('ordered_at')} AS DATE) <= DATE '{end}'
               GROUP BY customer_id, day"""


def rfm_per_customer(sample: Path, end: str, unit_days: float = 7.0) -> str:
    """clv.rfm_table(per_customer=True): per customer, purchase days (orders on one UTC day are one purchase)
    up to ``end``: x = days − 1, recency and T in weeks, x⁺ = repeat days with revenue > 0, monetary = their
    mean revenue, revenue of every day, orders of $0."""
    return f"""
        WITH d AS ({_order_days(sample, end)}),
             p AS (SELECT customer_id, min(day) AS first, max(day) AS last, count(*) AS days,
                          arg_min(revenue, day) AS first_revenue, sum(revenue) AS revenue,
                          count(*) FILTER (revenue > 0) AS paid_days, sum(zero_orders)::BIGINT AS zero_orders
                   FROM d GROUP BY customer_id),
             x AS (SELECT *, paid_days - (first_revenue > 0)::BIGINT AS spend_frequency FROM p)
        SELECT customer_id, first AS first_purchase, days - 1 AS frequency, (last - first) / {unit_days} AS recency,
               (DATE '{end}' - first) / {unit_days} AS T, spend_frequency,
               CASE WHEN spend_frequency > 0 THEN (revenue - first_revenue)::DOUBLE / spend_frequency END AS monetary,
               revenue::DOUBLE AS revenue, zero_orders AS zero_revenue_orders
        FROM x ORDER BY customer_id"""


def rfm_distinct(sample: Path, end: str, unit_days: float = 7.0) -> str:
    """clv.rfm_table (default): distinct (x, t_x, T) in whole days with the number of customers."""
    return f"""
        WITH d AS (SELECT DISTINCT customer_id, CAST({_utc('ordered_at')} AS DATE) AS day
                   FROM {_file(sample, 'orders')} WHERE CAST({_utc('ordered_at')} AS DATE) <= DATE '{end}'),
             p AS (SELECT count(*) - 1 AS frequency, max(day) - min(day) AS recency_days,
                          DATE '{end}' - min(day) AS t_days FROM d GROUP BY customer_id)
        SELECT frequency, recency_days / {unit_days} AS recency, t_days / {unit_days} AS T, count(*) AS count
        FROM p GROUP BY frequency, recency_days, t_days ORDER BY frequency, recency_days, t_days"""
