"""Refusal handling shared by the measure and spine docks (private)."""

import warnings

from ..core.errors import PvmError


class RefusingDock:
    """Mixin for a dock that defines ``notify(message, level)``: a refusal is
    shown as a notification and raised as a :class:`PvmError`."""

    def _run(self, action, *args):
        """Run a control's action; a refusal is shown, not raised, from a button or key."""
        try:
            return action(*args)
        except PvmError:
            return None  # already notified

    def _refuse(self, message, level="warning"):
        self.notify(message, level)
        raise PvmError(message)

    def _append_row(self, csv_path, row, **options):
        """Append ``row`` to the shared CSV and return its row ID; store
        warnings are shown, a failure is refused."""
        from ..core.store import StoreWarning, append_rows

        try:
            guard = getattr(self, "path_guard", None)
            if guard is not None:  # a reading session may refuse (another window took it over)
                guard(csv_path, "append")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", StoreWarning)
                # a short lock timeout: the GUI waits at most a few seconds for another writer
                (row_id,) = append_rows(csv_path, [row], timeout=5.0, **options)
        except (PvmError, OSError) as exc:
            self._refuse(str(exc), "error")
        for warning in caught:
            if issubclass(warning.category, StoreWarning):
                self.notify(str(warning.message), "warning")
        return row_id
