"""Exception types raised by the core on bad input.

Every message says what is wrong and how to fix it. The command line turns
a :class:`PvmError` into one ``error: ...`` line and exit status 2; the
widgets show it as a napari notification.
"""

__all__ = [
    "AnnotationError",
    "ClassifierError",
    "ImageReadError",
    "PvmError",
    "StatsInputError",
    "StoreError",
]


class PvmError(ValueError):
    """Base class of every error napari-pvm reports to its user."""


class ImageReadError(PvmError):
    """An image file or DICOM folder cannot be read as a lumbar volume."""


class AnnotationError(PvmError):
    """An annotation file or outline is invalid."""


class ClassifierError(PvmError):
    """The fat classifier cannot be trained or applied on this input."""


class StoreError(PvmError):
    """The shared measurement CSV cannot be read or appended to."""


class StatsInputError(PvmError):
    """A table or variable cannot be analysed as asked."""
