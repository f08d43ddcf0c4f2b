"""The sample business's subscription process, re-simulated independently of the generator, for truths that
have no closed form: what a Cox model converges to on the sample's design (staggered starts over two years,
censoring at the end of the data, the sBG heterogeneity that makes hazards non-proportional)."""

import numpy as np
import pandas as pd

from pco_lib.data.sample import _conversion_density


def simulate_subscriptions(truth: dict, n: int, seed: int = 0) -> pd.DataFrame:
    """One row per subscription: plan, NPS category, end (days after the start, the sBG lifetime), follow
    (days of data after the start) and answer (day of the survey answer, 20–40 days after the start)."""

    rng = np.random.default_rng(seed)
    plans, nps = truth["subscriptions"]["plans"], truth["nps"]
    names, cats = list(plans), list(nps["category_shares"])
    plan = rng.choice(len(names), n, p=[plans[k]["share"] for k in names])
    cat = rng.choice(3, n, p=list(nps["category_shares"].values()))
    theta = np.clip(rng.beta([plans[names[i]]["sbg_alpha"] for i in plan],
                             [plans[names[i]]["sbg_beta"] for i in plan])
                    * np.array(list(nps["multipliers"].values()))[cat], 1e-6, 1)
    end = rng.geometric(theta) * truth["subscriptions"]["period_days"]
    density = _conversion_density()
    start = rng.choice(len(density), n, p=density) + rng.uniform(0, 1, n)
    return pd.DataFrame({"plan": np.array(names)[plan], "category": np.array(cats)[cat], "end": end,
                         "follow": len(density) - start, "answer": rng.uniform(20, 40, n)})


def cox_hazard_ratios(days, churned, group: pd.Series, reference: str) -> pd.Series:
    """Hazard ratios of each group against ``reference``, fitted with lifelines on aggregated counts."""
    from lifelines import CoxPHFitter

    frame = pd.DataFrame({"days": np.maximum(np.round(days), 1), "churned": churned.astype(int),
                          "group": group.to_numpy()})
    counts = frame.groupby(["days", "churned", "group"]).size().rename("n").reset_index()
    design = pd.get_dummies(counts.group).drop(columns=reference).astype(float)
    fit = CoxPHFitter().fit(pd.concat([design, counts[["days", "churned", "n"]]], axis=1), "days", "churned",
                            weights_col="n")
    return np.exp(fit.params_)
