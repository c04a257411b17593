import sys
from pathlib import Path

# the DICOM writer of tests/core/test_io.py is reused by widget tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
