"""A clinical table given as an Excel workbook gives the same statistics as the CSV."""

from pathlib import Path

import pandas as pd
import pytest

from napari_pvm.core.stats import analyse
from napari_pvm.core.stats.input import load_table

COHORT = Path(__file__).resolve().parents[1] / "data" / "paper_table2_cohort.csv"


def test_xlsx_equals_csv(tmp_path):
    csv = load_table(COHORT)
    xlsx = tmp_path / "clinical.xlsx"
    pd.read_csv(COHORT, dtype={"patient_id": str}).to_excel(xlsx, index=False)
    book = load_table(xlsx)
    assert list(book["patient_id"][:3]) == ["P001", "P002", "P003"]
    a = analyse(csv, "residual_lbp", continuous=["ps_total_area", "esmf_fi_pct"]).comparison.table
    b = analyse(book, "residual_lbp", continuous=["ps_total_area", "esmf_fi_pct"]).comparison.table
    for column in ("student_t", "welch_t", "mannwhitney_u", "p"):
        assert list(a[column]) == pytest.approx(list(b[column]), rel=1e-12)
