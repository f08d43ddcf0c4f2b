"""Statistics on small frames and sufficient statistics: numpy, scipy, pandas, statsmodels and lifelines only —
no Ibis, no I/O, no plotting, nothing else of pco_lib (an import-linter contract checks it).

- :mod:`.inference`: Welch, proportions, ratio metrics (delta method), CUPED, sample ratio mismatch, multiple
  testing, always-valid intervals, Bayesian chance to beat control, non-inferiority, power.
- :mod:`.intervals`: Wilson intervals for proportions, the NPS interval.
- :mod:`.scores`: effect sizes and model scores (Cohen's d, AUC, weighted quantiles).
- :mod:`.survival`: Kaplan–Meier, log-rank tests, restricted mean survival time.
- :mod:`.cox`: the Cox model with frequency weights (Efron ties), concordance, the proportional-hazards test,
  churn risk.
- :mod:`.models`: one file per purchase/retention model (BG/NBD, MBG/NBD, Pareto/NBD, Gamma-Gamma, sBG).
"""
