"""Binary logistic regression in the layout of SPSS (the seed paper's Table 3).

statsmodels' ``Logit`` is the engine. Around it this module builds what SPSS
LOGISTIC REGRESSION /METHOD=ENTER prints — the "Variables in the Equation"
rows (B, S.E., Wald = (B/SE)², df, Sig., Exp(B), Wald 95 % CI), the model
summary (−2 log likelihood, Cox & Snell and Nagelkerke R²), the omnibus test,
Hosmer–Lemeshow and the classification table — and the checks SPSS leaves to
the reader: events per variable, complete or quasi-complete separation
(a linear program, Konis 2007) and collinearity (VIF, condition number).
"""

import dataclasses
import math
import warnings as _warnings

import numpy as np
import pandas as pd
from scipy import optimize as _optimize
from scipy import stats as _stats

from ..errors import StatsInputError

__all__ = [
    "EPV_MIN",
    "VIF_STRONG",
    "LogisticResult",
    "design_matrix",
    "detect_separation",
    "hosmer_lemeshow",
    "logistic_regression",
]

#: Fewer events per variable than this triggers a warning (Peduzzi et al. 1996).
EPV_MIN = 10
#: A variance inflation factor at or above this is reported as strong collinearity.
VIF_STRONG = 5.0
#: Classification cut-off of SPSS's classification table (CRITERIA CUT(.5)).
CUT = 0.5

_Z975 = _stats.norm.ppf(0.975)

_ROW_COLUMNS = [
    "variable",
    "covariate",
    "level",
    "reference",
    "B",
    "SE",
    "wald",
    "df",
    "p",
    "OR",
    "ci_low",
    "ci_high",
    "vif",
]


@dataclasses.dataclass(frozen=True)
class LogisticResult:
    """Result of :func:`logistic_regression`.

    Attributes
    ----------
    rows : pandas.DataFrame
        "Variables in the Equation", constant last: ``variable`` (the
        parameter: a covariate, ``covariate[level]`` for an indicator of a
        categorical covariate, or ``Constant``), ``covariate``, ``level``,
        ``reference`` (the reference category of a categorical covariate),
        ``B``, ``SE``, ``wald``, ``df``, ``p``, ``OR`` (Exp(B)), ``ci_low``,
        ``ci_high`` (Wald 95 % CI of Exp(B)) and ``vif``. All numbers are NaN
        when the model cannot be estimated; ``warnings`` says why.
    terms : pandas.DataFrame
        The joint Wald test of every categorical covariate with more than two
        levels (SPSS's row with df = levels − 1).
    summary : dict
        ``n``, ``n_missing``, ``events``, ``non_events``, ``n_parameters``,
        ``epv``, ``minus2ll``, ``minus2ll_null``, ``model_chi2``,
        ``model_df``, ``model_p``, ``cox_snell_r2``, ``nagelkerke_r2``,
        ``iterations``, ``converged``, ``condition_number``, ``separation``
        (None, ``"complete"`` or ``"quasi-complete"``), ``references``.
    classification : pandas.DataFrame
        Observed × predicted counts at the cut 0.5 with percent correct.
    hosmer_lemeshow : dict or None
        ``chi2``, ``df``, ``p`` and ``groups`` (DataFrame of the contingency
        table), or None when it cannot be computed.
    warnings : list of str
    fitted : pandas.Series or None
        Predicted probability of the event per patient used.
    """

    rows: pd.DataFrame
    terms: pd.DataFrame
    summary: dict
    classification: pd.DataFrame
    hosmer_lemeshow: dict
    warnings: list
    fitted: pd.Series = None


# --------------------------------------------------------------------------
# Design matrix
# --------------------------------------------------------------------------


def design_matrix(data, covariates, *, categorical=(), reference=None):
    """Numeric design matrix (no constant) with indicator coding.

    Parameters
    ----------
    data : pandas.DataFrame
        Complete cases only.
    covariates : sequence of str
        Columns, in model order.
    categorical : collection of str, optional
        Covariates to code as indicators. A numeric covariate coded 0/1 is
        entered as it is (its reference is 0), which gives the same B.
    reference : dict, optional
        Reference level per categorical covariate (text). Default: the first
        level (lowest code, or first in alphabetical order).

    Returns
    -------
    X : pandas.DataFrame
        One column per parameter.
    info : list of dict
        Per column: ``variable``, ``covariate``, ``level``, ``reference``.
    references : dict
        Covariate → reference level, for every categorical covariate.
    """
    reference = {k: str(v) for k, v in (reference or {}).items()}
    cols, info, refs = {}, [], {}
    for name in covariates:
        x = data[name]
        numeric = pd.to_numeric(x, errors="coerce")
        is_num = bool(numeric.notna().all())
        if name not in categorical:
            if not is_num:
                raise StatsInputError(f"logistic covariate {name} is not numeric; declare it categorical")
            cols[name] = numeric.astype(float)
            info.append({"variable": name, "covariate": name, "level": None, "reference": None})
            continue
        labels = x.map(_label)
        levels = _ordered_levels(labels, numeric if is_num else None)
        if len(levels) < 2:
            raise StatsInputError(f"logistic covariate {name} has one level only ({levels[0]!r})")
        ref = reference.get(name, levels[0])
        if ref not in levels:
            raise StatsInputError(f"reference {ref!r} of {name} is not one of its levels ({', '.join(levels)})")
        refs[name] = ref
        if is_num and len(levels) == 2 and set(numeric.unique()) <= {0.0, 1.0} and ref == "0":
            cols[name] = numeric.astype(float)
            info.append({"variable": name, "covariate": name, "level": "1", "reference": "0"})
            continue
        for lv in levels:
            if lv == ref:
                continue
            col = f"{name}[{lv}]"
            cols[col] = (labels == lv).astype(float)
            info.append({"variable": col, "covariate": name, "level": lv, "reference": ref})
    return pd.DataFrame(cols, index=data.index), info, refs


def _label(v):
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(v).strip()


def _ordered_levels(labels, numeric):
    levels = list(pd.unique(labels))
    if numeric is not None:
        value = dict(zip(labels, numeric, strict=True))
        return sorted(levels, key=lambda lv: value[lv])
    return sorted(levels)


# --------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------


def _standardised(X):
    """The design with every non-constant column centred and scaled to unit
    SD. With the constant column this spans the same space (the same rank,
    the same separations), but stays well conditioned when a covariate's
    offset dwarfs its spread (1e7 + a few units)."""
    X = np.asarray(X, float)
    mean, sd = X.mean(axis=0), X.std(axis=0)
    varies = sd > 0
    out = X.copy()
    out[:, varies] = (X[:, varies] - mean[varies]) / sd[varies]
    return out


def detect_separation(X, y):
    """Whether the data are completely or quasi-completely separated.

    Solves the linear program of Konis (2007): maximise Σ sᵢ xᵢ·β subject to
    sᵢ xᵢ·β ≥ 0 for every patient (sᵢ = ±1 for event / no event), with β in
    a box. The maximum-likelihood estimates exist exactly when the optimum
    is 0.

    Parameters
    ----------
    X : ndarray of shape (n, p)
        Design matrix including the constant column.
    y : ndarray of {0, 1}

    Returns
    -------
    kind : {None, "complete", "quasi-complete"}
    separated : ndarray of bool
        Patients whose outcome the separating direction predicts exactly.
    direction : ndarray of float
        The separating direction β (on the columns centred and scaled to
        unit SD, the constant kept), or zeros.
    """
    s = np.where(np.asarray(y) == 1, 1.0, -1.0)
    A = _standardised(X) * s[:, None]
    n, p = A.shape
    res = _optimize.linprog(-A.sum(axis=0), A_ub=-A, b_ub=np.zeros(n), bounds=[(-1, 1)] * p, method="highs")
    tol = 1e-7 * max(1.0, np.abs(A).max())
    if res.status != 0 or -res.fun <= tol * n:
        return None, np.zeros(n, bool), np.zeros(p)
    beta = res.x
    margin = A @ beta
    separated = margin > tol
    # Complete separation: some β puts every patient strictly on its side.
    res2 = _optimize.linprog(
        np.r_[np.zeros(p), -1.0],
        A_ub=np.c_[-A, np.ones(n)],
        b_ub=np.zeros(n),
        bounds=[(-1, 1)] * p + [(None, 1)],
        method="highs",
    )
    complete = res2.status == 0 and -res2.fun > tol
    if complete:
        beta = res2.x[:p]
        separated = A @ beta > tol
    return ("complete" if complete else "quasi-complete"), separated, beta


def _separating_covariates(X, y):
    """Words naming the covariates behind a separation.

    A covariate is named when dropping it removes the separation; when no
    single one does, the covariates that separate the outcome on their own
    are named instead.
    """
    names = list(X.columns)
    ones = np.ones((len(X), 1))
    values = X.to_numpy(float)
    needed = [
        c
        for i, c in enumerate(names)
        if len(names) > 1 and detect_separation(np.c_[ones, np.delete(values, i, axis=1)], y)[0] is None
    ]
    if needed:
        return ", ".join(needed)
    alone = [c for i, c in enumerate(names) if detect_separation(np.c_[ones, values[:, i]], y)[0] is not None]
    if alone:
        return " or ".join(alone) + (" (each on its own)" if len(alone) > 1 else "")
    return "the covariates"


def _vif(X):
    """Variance inflation factors of the columns of X (no constant)."""
    if X.shape[1] < 2:
        return np.ones(X.shape[1])
    corr = np.corrcoef(X, rowvar=False)
    try:
        return np.diag(np.linalg.inv(corr))
    except np.linalg.LinAlgError:
        return np.full(X.shape[1], np.inf)


def _condition_number(Xc):
    """Belsley condition number: columns (with the constant) scaled to unit length."""
    scaled = Xc / np.linalg.norm(Xc, axis=0)
    sv = np.linalg.svd(scaled, compute_uv=False)
    return float(sv[0] / sv[-1]) if sv[-1] > 0 else math.inf


def hosmer_lemeshow(y, p, *, groups=10):
    """Hosmer–Lemeshow test over deciles of risk, as SPSS describes it.

    Patients are sorted by predicted probability and cut into ``groups``
    groups of about n/groups patients at the deciles; patients with the same
    predicted probability are never split (the whole block joins the group
    of its first member), which can leave fewer groups. The statistic is
    Σ (O − E)² / (E (1 − E/n_g)) over the groups, on g − 2 df.

    Parameters
    ----------
    y : array_like of {0, 1}
    p : array_like of float
        Predicted probability of the event.
    groups : int, optional

    Returns
    -------
    result : dict or None
        ``chi2``, ``df``, ``p`` and ``groups`` (DataFrame with ``group``,
        ``n``, ``observed_0``, ``expected_0``, ``observed_1``,
        ``expected_1``); None when fewer than 3 groups can be formed.
    """
    y = np.asarray(y, float)
    p = np.asarray(p, float)
    n = y.size
    order = np.argsort(p, kind="stable")
    ps, ys = p[order], y[order]
    # Decile membership by position, then blocks of equal p kept together.
    g = np.floor(np.arange(n) * groups / n).astype(int)
    _, first = np.unique(ps, return_index=True)
    block_start = np.zeros(n, dtype=int)
    block_start[first] = first
    block_start = np.maximum.accumulate(block_start)
    g = g[block_start]
    rows = []
    for k in np.unique(g):
        m = g == k
        e1 = float(ps[m].sum())
        o1 = float(ys[m].sum())
        rows.append(
            {
                "group": len(rows) + 1,
                "n": int(m.sum()),
                "observed_0": m.sum() - o1,
                "expected_0": m.sum() - e1,
                "observed_1": o1,
                "expected_1": e1,
            }
        )
    table = pd.DataFrame(rows)
    if len(table) < 3:
        return None
    e1 = table["expected_1"].to_numpy()
    nk = table["n"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (table["observed_1"].to_numpy() - e1) ** 2 / (e1 * (1 - e1 / nk))
    if not np.all(np.isfinite(terms)):
        return None
    chi2 = float(terms.sum())
    df = len(table) - 2
    return {"chi2": chi2, "df": df, "p": float(_stats.chi2.sf(chi2, df)), "groups": table}


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def _empty_rows(info, vif=None):
    rows = [
        {**i, **dict.fromkeys(["B", "SE", "wald", "p", "OR", "ci_low", "ci_high", "vif"], math.nan), "df": 1}
        for i in info
    ]
    if vif is not None:
        for row, v in zip(rows, vif, strict=True):
            row["vif"] = float(v) if np.isfinite(v) else math.nan
    rows.append(
        {
            "variable": "Constant",
            "covariate": None,
            "level": None,
            "reference": None,
            **dict.fromkeys(["B", "SE", "wald", "p", "OR", "ci_low", "ci_high", "vif"], math.nan),
            "df": 1,
        }
    )
    return pd.DataFrame(rows, columns=_ROW_COLUMNS)


def logistic_regression(data, y, covariates, *, categorical=(), reference=None):
    """Binary logistic regression with every covariate entered (METHOD=ENTER).

    Parameters
    ----------
    data : pandas.DataFrame
        One row per patient with the covariate columns; numeric covariates as
        floats (NaN for missing), categorical ones as text or numbers.
    y : pandas.Series of {0, 1}
        Outcome per patient (1 = event), aligned on ``data``'s index.
    covariates : sequence of str
        Covariates, in the order of the output rows.
    categorical : collection of str, optional
        Covariates to enter as indicators (reference category stated).
    reference : dict, optional
        Reference level per categorical covariate; default the first level.

    Returns
    -------
    LogisticResult

    Raises
    ------
    StatsInputError
        A covariate that is constant among the complete cases, or too few
        patients for the number of parameters.
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    covariates = list(dict.fromkeys(covariates))
    if not covariates:
        raise StatsInputError("logistic regression needs at least one covariate")
    from .input import check_finite, outcome_series

    y = outcome_series(y, data.index)
    check_finite(data, covariates)
    frame = data[covariates]
    complete = frame.notna().all(axis=1)
    n_missing = int((~complete).sum())
    frame, yc = frame[complete], y[complete]
    notes = []
    if n_missing:
        per = {c: int(data[c].isna().sum()) for c in covariates if data[c].isna().any()}
        detail = ", ".join(f"{c}: {k}" for c, k in per.items())
        notes.append(f"logistic: {n_missing} patient(s) with a missing covariate left out (listwise; {detail})")
    for c in covariates:
        if frame[c].nunique() < 2:
            raise StatsInputError(
                f"logistic covariate {c} has no variance among the {len(frame)} complete cases "
                f"(every value is {frame[c].iloc[0] if len(frame) else 'missing'}); remove it"
            )
    X, info, refs = design_matrix(frame, covariates, categorical=categorical, reference=reference)
    n, k = X.shape
    events = int(yc.sum())
    non_events = n - events
    if events == 0 or non_events == 0:
        raise StatsInputError(
            f"logistic regression needs both outcomes among the complete cases; "
            f"got {events} events and {non_events} non-events"
        )
    if n <= k + 1:
        raise StatsInputError(
            f"too few patients for logistic regression: {n} complete cases for {k} parameters and a constant"
        )
    epv = min(events, non_events) / k
    summary = {
        "n": n,
        "n_missing": n_missing,
        "events": events,
        "non_events": non_events,
        "n_parameters": k,
        "epv": epv,
        "references": refs,
        "separation": None,
        "converged": None,
        "iterations": None,
    }
    if epv < EPV_MIN:
        notes.append(
            f"logistic: only {epv:.1f} events per variable ({min(events, non_events)} in the smaller "
            f"outcome group for {k} parameters); below {EPV_MIN} the coefficients are biased away "
            "from zero and their CIs unreliable: use fewer covariates"
        )
    for name, ref in refs.items():
        if any(i["covariate"] == name and i["variable"] != name for i in info):
            notes.append(f"logistic: reference category of {name} is {ref!r}")

    Xc = np.column_stack([np.ones(n), X.to_numpy(float)])
    rank = np.linalg.matrix_rank(_standardised(Xc))
    vif = _vif(X.to_numpy(float))
    summary["condition_number"] = _condition_number(Xc)
    empty = _empty_rows(info, vif)
    failed = {
        "rows": empty,
        "terms": pd.DataFrame(columns=["variable", "wald", "df", "p"]),
        "classification": pd.DataFrame(),
        "hosmer_lemeshow": None,
    }
    if rank < Xc.shape[1]:
        _, _, vt = np.linalg.svd(_standardised(Xc))
        null = vt[-1]
        names = ["the constant", *X.columns]
        involved = [names[i] for i in np.flatnonzero(np.abs(null) > 1e-6)]
        notes.append(
            "logistic: the covariates are perfectly collinear ("
            + ", ".join(involved)
            + " are linearly dependent), so their coefficients are not identifiable; "
            "remove one of them. No coefficients are reported."
        )
        return LogisticResult(summary=summary, warnings=notes, **failed)

    strong = [(c, v) for c, v in zip(X.columns, vif, strict=True) if v >= VIF_STRONG]
    if strong:
        corr = np.corrcoef(X.to_numpy(float), rowvar=False)
        parts = []
        for c, v in strong:
            i = list(X.columns).index(c)
            r = corr[i].copy()
            r[i] = 0
            j = int(np.argmax(np.abs(r)))
            parts.append(f"{c} (VIF {v:.1f}; r = {corr[i, j]:.2f} with {X.columns[j]})")
        notes.append(
            "logistic: strong collinearity: "
            + "; ".join(parts)
            + f". With VIF ≥ {VIF_STRONG:g} the separate coefficients of these covariates are "
            "unstable and a sign can flip; consider keeping only one of each correlated set"
        )

    kind, separated, _ = detect_separation(Xc, yc.to_numpy())
    if kind is not None:
        summary["separation"] = kind
        who = _separating_covariates(X, yc.to_numpy())
        notes.append(
            f"logistic: {kind} separation by {who}: the outcome is predicted exactly for "
            f"{int(separated.sum())} of {n} patients, so the maximum-likelihood estimates do not "
            "exist (some B would grow without bound and its odds ratio would be meaningless). "
            "No coefficients are reported. Remove or merge the covariates concerned, or use "
            "penalised (Firth) logistic regression."
        )
        return LogisticResult(summary=summary, warnings=notes, **failed)

    # fitted on centred, unit-SD covariates (Newton converges whatever their
    # units), then brought back: B = A·B_z, Cov(B) = A·Cov(B_z)·Aᵀ
    Z = _standardised(Xc)
    mean, sd = Xc.mean(axis=0), Xc.std(axis=0)
    to_raw = np.eye(Xc.shape[1])  # Z = Xc·A: z_j = (x_j − mean_j)/sd_j, column 0 the constant
    for j in np.flatnonzero(sd > 0):
        to_raw[j, j] = 1.0 / sd[j]
        to_raw[0, j] = -mean[j] / sd[j]
    model = sm.Logit(yc.to_numpy(float), Z)
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        try:
            fit = model.fit(method="newton", maxiter=100, disp=False)
        except (np.linalg.LinAlgError, ValueError) as exc:
            notes.append(f"logistic: the model could not be estimated ({exc}). No coefficients are reported.")
            return LogisticResult(summary=summary, warnings=notes, **failed)
    converged = bool(fit.mle_retvals.get("converged", False))
    summary["converged"] = converged
    summary["iterations"] = int(fit.mle_retvals.get("iterations", 0))
    sep_warned = any("separation" in str(w.message).lower() for w in caught)
    params = to_raw @ np.asarray(fit.params, float)
    cov = to_raw @ np.asarray(fit.cov_params(), float) @ to_raw.T
    bse = np.sqrt(np.diag(cov))
    if not converged or sep_warned or not np.all(np.isfinite(bse)):
        why = "separation" if sep_warned else "no convergence in 100 Newton steps"
        notes.append(
            f"logistic: the estimates are not reliable ({why}); no coefficients are reported. "
            "Check the covariates for (quasi-)separation or extreme values."
        )
        return LogisticResult(summary=summary, warnings=notes, **failed)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        notes.append("logistic: statsmodels reported a convergence warning; check the estimates")

    wald = (params / bse) ** 2
    pvals = _stats.chi2.sf(wald, 1)
    rows = []
    for i, meta in enumerate([*info, {"variable": "Constant", "covariate": None, "level": None, "reference": None}]):
        j = i + 1 if i < k else 0  # the constant is column 0 of Xc, printed last
        b, se = float(params[j]), float(bse[j])
        rows.append(
            {
                **meta,
                "B": b,
                "SE": se,
                "wald": float(wald[j]),
                "df": 1,
                "p": float(pvals[j]),
                "OR": math.exp(b) if b < 700 else math.inf,
                "ci_low": math.exp(b - _Z975 * se) if b - _Z975 * se < 700 else math.inf,
                "ci_high": math.exp(b + _Z975 * se) if b + _Z975 * se < 700 else math.inf,
                "vif": float(vif[i]) if i < k else math.nan,
            }
        )
    rows_df = pd.DataFrame(rows, columns=_ROW_COLUMNS)

    # Joint Wald tests of categorical covariates with several indicators.
    terms = []
    for name in refs:
        idx = [i + 1 for i, m in enumerate(info) if m["covariate"] == name and m["level"] is not None]
        if len(idx) > 1:
            b = params[idx]
            w = float(b @ np.linalg.solve(cov[np.ix_(idx, idx)], b))
            terms.append({"variable": name, "wald": w, "df": len(idx), "p": float(_stats.chi2.sf(w, len(idx)))})
    terms_df = pd.DataFrame(terms, columns=["variable", "wald", "df", "p"])

    ll1, ll0 = float(fit.llf), float(fit.llnull)
    cs = 1.0 - math.exp(2.0 * (ll0 - ll1) / n)
    summary.update(
        minus2ll=-2.0 * ll1,
        minus2ll_null=-2.0 * ll0,
        model_chi2=2.0 * (ll1 - ll0),
        model_df=k,
        model_p=float(_stats.chi2.sf(2.0 * (ll1 - ll0), k)),
        cox_snell_r2=cs,
        nagelkerke_r2=cs / (1.0 - math.exp(2.0 * ll0 / n)),
    )
    prob = np.asarray(fit.predict(Z), float)
    pred = (prob > CUT).astype(int)
    obs = yc.to_numpy()
    cls = []
    for g in (0, 1):
        n00 = int(np.sum((obs == g) & (pred == 0)))
        n01 = int(np.sum((obs == g) & (pred == 1)))
        cls.append(
            {
                "observed": g,
                "predicted_0": n00,
                "predicted_1": n01,
                "percent_correct": 100.0 * (n01 if g else n00) / max(1, n00 + n01),
            }
        )
    cls.append(
        {
            "observed": "overall",
            "predicted_0": None,
            "predicted_1": None,
            "percent_correct": 100.0 * float(np.mean(pred == obs)),
        }
    )
    classification = pd.DataFrame(cls)

    hl = hosmer_lemeshow(obs, prob)
    if hl is None:
        notes.append("logistic: the Hosmer–Lemeshow test needs at least 3 groups of distinct risk; not computed")

    extreme = int(np.sum((prob < 1e-6) | (prob > 1 - 1e-6)))
    if extreme:
        notes.append(
            f"logistic: {extreme} patient(s) have a fitted probability within 1e-6 of 0 or 1; "
            "the data are close to separation and the largest odds ratios are unstable"
        )
    return LogisticResult(
        rows=rows_df,
        terms=terms_df,
        summary=summary,
        classification=classification,
        hosmer_lemeshow=hl,
        warnings=notes,
        fitted=pd.Series(prob, index=frame.index, name="probability"),
    )
