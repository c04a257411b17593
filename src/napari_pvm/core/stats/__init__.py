"""Statistics of a study: the seed paper's analysis and observer reliability.

The data flow of this subpackage, one module per step:

- :mod:`.input`: the clinical table (from any spreadsheet), the outcome, and
  one reading per patient × observer from the shared CSVs
  (:func:`~.input.select_rows`), merged per patient with derived measures;
- :mod:`.compare`: the two-group comparison (Table 2);
- :mod:`.logistic`: binary logistic regression (Table 3);
- :mod:`.roc`: ROC curves with Youden cut-offs (Figure 2);
- :mod:`.reliability`: ICC, Bland–Altman, SEM and MDC between observers or
  readings;
- :mod:`.format`: the P-value and number formatters every report uses;
- :mod:`.report`: text, HTML and the files of ``--out``;
- :mod:`.plots`: ROC curves, box plots and Bland–Altman plots on a given
  matplotlib Axes.

:func:`analyse` is the front door: the call behind ``napari-pvm stats`` and
the Statistics dock. Nothing here imports napari or Qt; :mod:`.report` and
:mod:`.plots` import matplotlib only when used.

Examples
--------
>>> import pandas as pd
>>> from napari_pvm.core.stats import analyse, format_p
>>> table = pd.DataFrame({"lbp": [0, 0, 0, 1, 1, 1], "area": [15.1, 16.0, 14.2, 10.2, 12.5, 9.8]})
>>> format_p(analyse(table, "lbp", continuous=["area"]).comparison.table.loc[0, "p"])
'0.012'
"""

from .analysis import StatsResult, analyse
from .format import format_p
from .input import (
    MAX_CATEGORICAL_LEVELS,
    derived_measures,
    detect_type,
    encode_outcome,
    load_table,
    merge_measurements,
    read_measurements,
    select_rows,
)
from .reliability import ReliabilityResult, inter_observer, intra_observer

__all__ = [
    "MAX_CATEGORICAL_LEVELS",
    "ReliabilityResult",
    "StatsResult",
    "analyse",
    "derived_measures",
    "detect_type",
    "encode_outcome",
    "format_p",
    "inter_observer",
    "intra_observer",
    "load_table",
    "merge_measurements",
    "read_measurements",
    "select_rows",
]
