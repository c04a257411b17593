"""Numbers for people: the one P-value formatter and its companions.

Reports, the command line and the Statistics dock all print numbers through
these functions, so a P value reads the same everywhere. JSON output is never
rounded (see :mod:`napari_pvm.core._json`).
"""

import math

__all__ = ["format_ci", "format_number", "format_p", "format_ratio", "is_number"]

#: Shown for a value that could not be computed.
MISSING = "–"


def is_number(value):
    """True for a finite int or float (numpy scalars included)."""
    try:
        return value is not None and not isinstance(value, (str, bool)) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def format_p(p):
    """A P value for display: ``"<0.001"`` below 0.001, else 3 decimals.

    Parameters
    ----------
    p : float or None

    Returns
    -------
    str
        ``"–"`` when ``p`` is missing.

    Examples
    --------
    >>> format_p(0.00049), format_p(0.0404), format_p(1.0), format_p(None)
    ('<0.001', '0.040', '1.000', '–')
    """
    if not is_number(p):
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_number(value, digits=3):
    """A number with a fixed number of decimals and a true minus sign.

    Examples
    --------
    >>> format_number(-1.23456), format_number(float("nan"))
    ('−1.235', '–')
    """
    return f"{float(value):.{digits}f}".replace("-", "−") if is_number(value) else MISSING


def format_ratio(value):
    """An odds ratio: 3 decimals, or 3 significant digits when very small or large.

    Examples
    --------
    >>> format_ratio(1.0823), format_ratio(185212.4), format_ratio(0.00012)
    ('1.082', '1.85e+05', '0.00012')
    """
    if not is_number(value):
        return MISSING
    value = float(value)
    return (f"{value:.3g}" if value < 0.001 or value >= 1e5 else f"{value:.3f}").replace("-", "−")


def format_ci(low, high, *, digits=3, sep="–"):
    """Two bounds, or one ``"–"`` when either is missing.

    Examples
    --------
    >>> format_ci(0.81, 0.9), format_ci(-1.5, 2.0, sep=" to ")
    ('0.810–0.900', '−1.500 to 2.000')
    """
    if not (is_number(low) and is_number(high)):
        return MISSING
    return f"{format_number(low, digits)}{sep}{format_number(high, digits)}"
