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
    """Print each warning and ``napari_pvm`` log warning of the block once as
    one ``note: ...`` line on stderr, after the block succeeded (a refusal
    stays the single ``error: ...`` line)."""
    messages = []
    handler = _Collect(messages)
    logger = logging.getLogger("napari_pvm")
    logger.addHandler(handler)  # also keeps logging's last-resort handler quiet
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        logger.removeHandler(handler)
    for message in dict.fromkeys([*messages, *(str(w.message) for w in caught)]):
        sys.stderr.write(f"note: {' '.join(message.split())}\n")
