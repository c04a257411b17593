"""Notices of a successful run as plain ``note: ...`` lines on stderr.

The store reports what it repaired (a torn last line moved to the
quarantine, an abandoned writer record removed) as a
:class:`~napari_pvm.core.store.StoreWarning` and a log record; on the
command line these would print as Python's warning text with a source path,
and again through logging's last-resort handler.
"""

import contextlib
import logging
import sys
import warnings

__all__ = ["plain_notes"]


class _Collect(logging.Handler):
    def __init__(self, messages):
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def plain_notes():
    """Print each store warning and ``napari_pvm`` log warning of the block
    once as one ``note: ...`` line on stderr, after the block succeeded (a
    refusal stays the single ``error: ...`` line); other libraries' warnings
    are left to Python's own filters."""
    from ..core.store import StoreWarning

    messages = []
    handler = _Collect(messages)
    logger = logging.getLogger("napari_pvm")
    logger.addHandler(handler)  # also keeps logging's last-resort handler quiet
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StoreWarning)  # other warnings keep the filters they had
            yield
    finally:
        logger.removeHandler(handler)
    ours = [w for w in caught if issubclass(w.category, StoreWarning)]
    for message in dict.fromkeys([*messages, *(str(w.message) for w in ours)]):
        sys.stderr.write(f"note: {' '.join(message.split())}\n")
    for w in caught:
        if not issubclass(w.category, StoreWarning):  # a library's warning is shown as Python would
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
