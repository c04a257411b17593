"""Reference outputs from GNU PSPP (Debian package ``pspp``) for the stats tests.

PSPP is an independent SPSS work-alike; its T-TEST, CROSSTABS, NPAR TESTS
/M-W, EXAMINE, LOGISTIC REGRESSION and ROC print the same tables as SPSS.
This script writes the PSPP syntax for two data sets beside it and runs
``pspp`` to produce CSV output with 16 decimals:

- ``paper_table2_cohort.csv``: the 213-patient cohort that reproduces the seed
  paper's Table 2 (copied from shared/data/cohort);
- ``small_cohort.csv``: 40 made-up patients with tied ordinal scores, missing
  values, a 3-level code and small expected counts (written by
  :func:`make_small` with a fixed seed).

Usage (from the repository root)::

    python tests/data/pspp_reference.py            # rewrite tests/data/pspp_*.csv
    python tests/data/pspp_reference.py --out DIR  # write elsewhere (the live test)

The stored outputs let the comparison run where PSPP is not installed;
``test_stats.py`` re-runs PSPP when it is. :func:`read_pspp_csv` parses the
output into tables.
"""

import argparse
import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

COHORT_CONTINUOUS = [
    "age",
    "bmi",
    "vbq",
    "kyphosis_pre",
    "kyphosis_post",
    "kyphosis_last",
    "cement_volume",
    "ps_total_area",
    "ps_muscle_area",
    "ps_fi_pct",
    "esmf_total_area",
    "esmf_muscle_area",
    "esmf_fi_pct",
    "vas_pre",
    "vas_post",
    "vas_last",
]
COHORT_CATEGORICAL = [
    "sex_male",
    "diabetes",
    "hypertension",
    "smoking",
    "alcohol",
    "trauma_severity",
    "fascia_injury",
    "fracture_level",
    "cement_diffused",
]
COHORT_LOGISTIC = [
    "fascia_injury",
    "vbq",
    "kyphosis_post",
    "cement_diffused",
    "ps_muscle_area",
    "ps_total_area",
    "esmf_fi_pct",
]
COHORT_ROC = ["ps_total_area", "esmf_fi_pct"]

_HEAD = """SET DECIMAL=DOT.
SET FORMAT=F40.16.
OUTPUT MODIFY /SELECT TABLES /TABLECELLS SELECT = [ SIGNIFICANCE RESIDUAL PERCENT ] FORMAT = F40.16.
"""


def _variables(header, text=(), codes=()):
    parts = []
    for c in header:
        if c in text:
            parts.append(f"{c} A16")
        elif c in codes:
            parts.append(f"{c} F8.0")
        else:
            parts.append(f"{c} F40.16")
    return "\n   ".join(parts)


def _get_data(filename, header, text=(), codes=()):
    return (
        f"GET DATA /TYPE=TXT /FILE='{filename}' /ENCODING='UTF-8'\n"
        '  /ARRANGEMENT=DELIMITED /DELCASE=LINE /FIRSTCASE=2 /DELIMITERS=","\n'
        f"  /VARIABLES= {_variables(header, text, codes)}.\n"
    )


def cohort_syntax():
    header = (HERE / "paper_table2_cohort.csv").open(encoding="utf-8").readline().strip().split(",")
    codes = ["residual_lbp", *[c for c in COHORT_CATEGORICAL if c not in ("trauma_severity", "fracture_level")]]
    return (
        _HEAD
        + _get_data(
            "paper_table2_cohort.csv", header, codes=codes, text=("patient_id", "trauma_severity", "fracture_level")
        )
        + f"T-TEST GROUPS=residual_lbp(0 1) /VARIABLES={' '.join(COHORT_CONTINUOUS)}.\n"
        + f"CROSSTABS /TABLES={' '.join(COHORT_CATEGORICAL)} BY residual_lbp /STATISTICS=CHISQ /CELLS=COUNT EXPECTED.\n"
        + f"NPAR TESTS /M-W= {' '.join(COHORT_CONTINUOUS)} BY residual_lbp(0 1).\n"
        + "EXAMINE VARIABLES=age esmf_fi_pct kyphosis_post BY residual_lbp\n"
        + "  /PERCENTILES(25 50 75)=HAVERAGE /STATISTICS=NONE /PLOT=NONE.\n"
        + f"LOGISTIC REGRESSION residual_lbp WITH {' '.join(COHORT_LOGISTIC)} /PRINT=CI(95).\n"
        + f"ROC {' '.join(COHORT_ROC)} BY residual_lbp(1) /PRINT=SE COORDINATES /PLOT=NONE.\n"
        + "ROC ps_total_area BY residual_lbp(1) /PRINT=SE /CRITERIA=TESTPOS(SMALL) /PLOT=NONE.\n"
    )


def small_syntax():
    header = (HERE / "small_cohort.csv").open(encoding="utf-8").readline().strip().split(",")
    return (
        _HEAD
        + _get_data("small_cohort.csv", header, text=("patient_id",), codes=("y", "group3", "flag", "rare"))
        + "T-TEST GROUPS=y(0 1) /VARIABLES=value score.\n"
        + "NPAR TESTS /M-W= value score BY y(0 1).\n"
        + "CROSSTABS /TABLES=flag rare group3 BY y /STATISTICS=CHISQ /CELLS=COUNT EXPECTED.\n"
        + "LOGISTIC REGRESSION y WITH value flag group3 /CATEGORICAL=group3 /PRINT=CI(95).\n"
        # One variable per ROC and EXAMINE command: with several, both drop
        # cases listwise, while the tool analyses each variable on its own.
        + "ROC score BY y(1) /PRINT=SE COORDINATES /PLOT=NONE.\n"
        + "ROC value BY y(1) /PRINT=SE COORDINATES /PLOT=NONE.\n"
        + "EXAMINE VARIABLES=score BY y /PERCENTILES(25 50 75)=HAVERAGE /STATISTICS=NONE /PLOT=NONE.\n"
        + "EXAMINE VARIABLES=value BY y /PERCENTILES(25 50 75)=HAVERAGE /STATISTICS=NONE /PLOT=NONE.\n"
    )


def make_small(path=HERE / "small_cohort.csv", seed=7):
    """Write the 40-patient made-up data set (deterministic)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = 40
    y = np.array([1] * 15 + [0] * 25)
    rng.shuffle(y)
    score = np.clip(np.round(rng.normal(5 + 1.5 * y, 1.8)), 1, 10).astype(int)
    value = np.round(rng.normal(20 - 3 * y, 4), 2)
    value[[3, 17]] = np.nan
    group3 = rng.choice([1, 2, 3], size=n, p=[0.45, 0.35, 0.2])
    flag = (rng.random(n) < 0.3 + 0.25 * y).astype(int)
    rare = (rng.random(n) < 0.08 + 0.15 * y).astype(int)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["patient_id", "y", "score", "value", "group3", "flag", "rare"])
        for i in range(n):
            w.writerow(
                [
                    f"S{i + 1:03d}",
                    y[i],
                    score[i],
                    "" if np.isnan(value[i]) else f"{value[i]:.2f}",
                    group3[i],
                    flag[i],
                    rare[i],
                ]
            )
    return path


def run(out_dir=HERE, pspp="pspp"):
    """Write pspp_cohort.sps / pspp_small.sps and their CSV output into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("paper_table2_cohort.csv", "small_cohort.csv"):
        if out_dir != HERE:
            shutil.copy(HERE / name, out_dir / name)
    written = []
    for stem, syntax in (("pspp_cohort", cohort_syntax()), ("pspp_small", small_syntax())):
        sps = out_dir / f"{stem}.sps"
        sps.write_text(syntax, encoding="utf-8")
        out = out_dir / f"{stem}.csv"
        subprocess.run([pspp, sps.name, "-o", out.name], cwd=out_dir, check=True, capture_output=True, timeout=120)
        written.append(out)
    return written


def read_pspp_csv(path):
    """Parse PSPP's CSV output into a list of (title, rows) in output order."""
    tables, title, lines = [], None, []

    def flush():
        if title is not None:
            tables.append((title, list(csv.reader(io.StringIO("\n".join(lines))))))

    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("Table: "):
            flush()
            title, lines = line[len("Table: ") :], []
        elif line.strip() == "":
            continue
        elif title is not None:
            lines.append(line)
    flush()
    return tables


def number(text):
    """A PSPP cell as float ('.123' → 0.123, '-.5' → -0.5, '' → None)."""
    text = text.strip().rstrip("%")
    if not text:
        return None
    return float(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--pspp", default="pspp")
    parser.add_argument("--make-small", action="store_true", help="rewrite small_cohort.csv first")
    a = parser.parse_args()
    if a.make_small:
        make_small()
    for f in run(a.out, a.pspp):
        print(f)
    sys.exit(0)
