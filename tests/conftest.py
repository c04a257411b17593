"""Shared fixtures: the real data folder and small ground-truth phantoms."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: ../shared/data/real beside the checkout (read-only; absent on some machines).
REAL_DATA = REPO.parent / "shared" / "data" / "real"
COHORT = REPO.parent / "shared" / "data" / "cohort" / "paper_table2_cohort.csv"


@pytest.fixture(scope="session")
def real_data():
    """Path of ../shared/data/real; skips the test when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip("../shared/data/real is not present on this machine")
    return REAL_DATA


@pytest.fixture(scope="session")
def small_phantom():
    """A small (1.2 mm, 336×336) phantom with bias field and noise, seed 11."""
    from napari_pvm.core.phantom import make_phantom

    return make_phantom(seed=11, spacing=1.2)


@pytest.fixture(scope="session")
def phantom_files(tmp_path_factory):
    """phantom.nii.gz, phantom.pvm.json and truth.json written by the CLI code path."""
    from napari_pvm.core.phantom import write_phantom

    out = tmp_path_factory.mktemp("phantom")
    return write_phantom(out, seed=5, spacing=1.2)


class _OpenRecorder:
    """Records the absolute path of every file opened while on (one audit
    hook per process: Python cannot remove audit hooks)."""

    installed = False

    def __init__(self):
        self.on = False
        self.seen = []

    def _hook(self, event, args):
        if self.on and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            self.seen.append(os.path.abspath(os.fsdecode(args[0])))

    def start(self):
        if not _OpenRecorder.installed:
            sys.addaudithook(self._hook)
            _OpenRecorder.installed = True
        self.seen.clear()
        self.on = True

    def stop(self):
        """Stop recording; return the paths opened since ``start``."""
        self.on = False
        return list(self.seen)


_RECORDER = _OpenRecorder()


@pytest.fixture
def open_recorder():
    """``start()`` / ``stop() -> [absolute paths]`` of the files opened in between."""
    yield _RECORDER
    _RECORDER.on = False
