"""Tables written by people and spreadsheets: clinical tables and worklists.

A clinical table or a worklist is often saved by Excel or LibreOffice, and in
much of Europe that means ``;`` between fields, a decimal comma, a UTF-8
byte-order mark or the Windows-1252 encoding. :func:`read_table` reads all of
these, every cell as text (IDs keep their leading zeros), and refuses what it
cannot read with a message that names the file, the problem and the fix.
:func:`check_columns` refuses a missing column and suggests the nearest names.

The shared measurement CSVs are not read here: they keep the strict format of
contract 3 (:mod:`napari_pvm.core.store`).

Examples
--------
>>> import pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> path = folder / "clinical.csv"
>>> _ = path.write_bytes("patient_id;bmi\\n007;23,5\\n".encode("cp1252"))
>>> table = read_table(path)
>>> table.to_dict("records")
[{'patient_id': '007', 'bmi': '23.5'}]
>>> check_columns(table, ["BMI"], source="clinical.csv", flag="--continuous")
Traceback (most recent call last):
...
napari_pvm.core.errors.StatsInputError: --continuous: no such column in clinical.csv: 'BMI' (did you mean 'bmi'?)
"""

import csv
import difflib
import re
import warnings
import zipfile
from pathlib import Path

from .errors import StatsInputError

__all__ = ["ENCODINGS", "MISSING_MARKERS", "SEPARATORS", "check_columns", "read_table", "suggest"]

#: Encodings tried in order: UTF-8 (with or without byte-order mark), then
#: Windows-1252, what Excel's plain "CSV" writes on Western-European Windows.
ENCODINGS = ("utf-8-sig", "cp1252")
#: Field separators recognised in a text table (comma, semicolon, tab).
SEPARATORS = (",", ";", "\t")
#: Cells read as missing besides the empty cell (SPSS writes ``.``).
MISSING_MARKERS = ("", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", ".")

_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_EXCEL = (".xlsx", ".xlsm", ".xls")


def _decode(path, what):
    data = path.read_bytes()
    for encoding in ENCODINGS:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise StatsInputError(
        f"{path.name}: the {what} is neither UTF-8 nor Windows-1252 text; "
        "save it from the spreadsheet as 'CSV UTF-8 (comma delimited)'"
    )


def _separator(text, suffix):
    if suffix == ".tsv":
        return "\t"
    header = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    counts = {sep: len(next(csv.reader([header], delimiter=sep), [])) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda sep: counts[sep])  # ties keep the comma
    return best if counts[best] > 1 else ","


def _decimal_commas(frame, sep):
    """Columns whose every value is a number, some with a decimal comma: use a point."""
    if sep == ",":
        return frame  # an unquoted decimal comma cannot occur in a comma-separated file
    for column in frame.columns:
        values = frame[column].dropna()
        if values.empty:
            continue
        comma = values.str.match(_DECIMAL_COMMA)
        if comma.any() and (comma | values.str.match(_PLAIN_NUMBER)).all():
            frame[column] = frame[column].str.replace(",", ".", regex=False)
    return frame


def read_table(path, *, what="table", usecols=None):
    """Read a CSV, TSV or Excel table as text, whatever spreadsheet wrote it.

    Parameters
    ----------
    path : str or Path
        ``.csv``/``.txt`` (separator ``,``, ``;`` or tab, found from the
        header line), ``.tsv`` (tab), ``.xlsx``/``.xls`` (first sheet; needs
        openpyxl). Text files may be UTF-8, with or without byte-order mark,
        or Windows-1252.
    what : str, optional
        What the table is ("clinical table", "worklist"), for messages.
    usecols : collection of str, optional
        Read only these columns (others are skipped, never an error).

    Returns
    -------
    pandas.DataFrame
        Every cell as text with surrounding spaces removed, missing cells
        (empty, ``NA``, SPSS's ``.``, …) as None; column names stripped. In a
        ``;``- or tab-separated file, a column whose values are all numbers,
        some written with a decimal comma (``12,5``), gets decimal points.
        ``frame.attrs`` records ``encoding`` and ``separator``.

    Raises
    ------
    StatsInputError
        A missing or empty file, an unknown extension, undecodable text,
        lines with more fields than the header, or an unreadable workbook;
        the message names the file, the problem and the fix.
    """
    import pandas as pd

    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise StatsInputError(f"{what} not found: {path}")
    keep = None if usecols is None else (lambda c: str(c).strip() in set(usecols))
    options = {"dtype": str, "keep_default_na": False, "na_values": list(MISSING_MARKERS), "usecols": keep}
    encoding, sep = None, None
    try:
        if suffix in _EXCEL:
            try:
                frame = pd.read_excel(path, **options)
            except ImportError:
                raise StatsInputError(
                    f"reading {path.name} needs the openpyxl package (pip install openpyxl); or save the sheet as CSV"
                ) from None
            except (ValueError, zipfile.BadZipFile, KeyError) as exc:
                raise StatsInputError(f"{path.name} is not a readable Excel workbook ({exc})") from None
        elif suffix in (".csv", ".tsv", ".txt", ""):
            import io

            text, encoding = _decode(path, what)
            if not text.strip():
                raise StatsInputError(f"{path.name}: the {what} is empty")
            sep = _separator(text, suffix)
            with warnings.catch_warnings():
                # more fields than header names would shift columns silently
                warnings.simplefilter("error", pd.errors.ParserWarning)
                frame = pd.read_csv(io.StringIO(text.lstrip("\ufeff")), sep=sep, index_col=False, **options)
        else:
            raise StatsInputError(f"{path.name}: unknown {what} format {suffix!r}; use .csv, .tsv or .xlsx")
    except pd.errors.ParserWarning:
        raise StatsInputError(
            f"{path.name} has lines with more fields than its header (a stray or trailing "
            f"separator?); fix the {what} so every line has one value per column"
        ) from None
    except pd.errors.EmptyDataError:
        raise StatsInputError(f"{path.name}: the {what} is empty") from None
    except pd.errors.ParserError as exc:
        raise StatsInputError(f"{path.name} is not a valid {what}: {' '.join(str(exc).split())}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
    frame = frame.mask(frame.map(lambda v: isinstance(v, str) and v in MISSING_MARKERS))
    frame = frame.astype(object).where(frame.notna(), None)
    if sep is not None:
        frame = _decimal_commas(frame.astype("string"), sep).astype(object)
        frame = frame.where(frame.notna(), None)
    frame.attrs.update(encoding=encoding, separator=sep)
    return frame


def suggest(name, names, *, n=3):
    """The existing names nearest to ``name`` (case-insensitive matches first).

    Examples
    --------
    >>> suggest("sex", ["patient_id", "sex_male", "age"])
    ['sex_male']
    """
    names = [str(c) for c in names]
    same_case = [c for c in names if c.lower() == str(name).lower()]
    close = difflib.get_close_matches(str(name).lower(), [c.lower() for c in names], n=n, cutoff=0.5)
    by_lower = {c.lower(): c for c in names}
    prefix = [c for c in names if c.lower().startswith(str(name).lower()) and str(name)]
    out = same_case + [by_lower[c] for c in close] + prefix
    return list(dict.fromkeys(out))[:n]


def check_columns(frame, names, *, source="the table", flag=None, error=StatsInputError):
    """Refuse names that are not columns of ``frame``, suggesting the nearest ones.

    Parameters
    ----------
    frame : pandas.DataFrame
    names : sequence of str
    source : str, optional
        The file or table, for the message.
    flag : str, optional
        The option that named the columns (``--categorical``), for the message.
    error : type, optional
        The exception class raised (a :class:`~napari_pvm.core.errors.PvmError`).
    """
    unknown = [n for n in names if n not in frame.columns]
    if not unknown:
        return
    parts = []
    for name in unknown:
        near = suggest(name, frame.columns)
        hint = f" (did you mean {' or '.join(repr(c) for c in near)}?)" if near else ""
        parts.append(f"{name!r}{hint}")
    noun = "column" if len(unknown) == 1 else "columns"
    prefix = f"{flag}: " if flag else ""
    raise error(f"{prefix}no such {noun} in {source}: {', '.join(parts)}")
