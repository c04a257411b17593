"""`napari-pvm migrate-csv` end to end: JSON, text, already current, bad files."""

import json
import sys
from pathlib import Path

import pytest

from napari_pvm.cli import main
from napari_pvm.core import schema


def write_v1(path, lines=()):
    path.write_text(",".join(schema.V1_COLUMNS) + "\n" + "".join(lines), encoding="utf-8")
    return path


def v1_row(pid):
    """A version-1 line: only the identity cells matter to the migration."""
    cells = dict.fromkeys(schema.V1_COLUMNS, "")
    cells.update(
        schema_version="1",
        row_id=f"r{pid}",
        patient_id=pid,
        observer_id="A",
        session="read1",
        level="L4",
        slice_index="3",
        rois_present="ES_L;MF_L",
    )
    return ",".join(cells.values()) + "\n"


def test_migrate_json_then_already_current(tmp_path, capsys):
    path = write_v1(tmp_path / "m.csv", [v1_row("001"), v1_row("002")])
    before = path.read_bytes()
    assert main(["migrate-csv", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "path": str(path),
        "from_version": "1",
        "to_version": "2",
        "rows": 2,
        "backup": str(path) + ".v1.bak",
        "migrated": True,
    }
    assert Path(out["backup"]).read_bytes() == before
    assert (
        path.read_text()
        .splitlines()[1]
        .endswith(",ES_L:drawn;MF_L:drawn" + "," * (len(schema.V2_COLUMNS) - len(schema.V1_COLUMNS) - 1))
    )
    after = path.read_bytes()
    assert main(["migrate-csv", str(path)]) == 0
    assert "already schema version 2; nothing written" in capsys.readouterr().out
    assert path.read_bytes() == after


@pytest.mark.parametrize("content", [None, "a,b\n", ""])
def test_bad_file_exits_2_with_one_line(tmp_path, capsys, content):
    path = tmp_path / "m.csv"
    if content is not None:
        path.write_text(content)
    assert main(["migrate-csv", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if content is None else ["m.csv"])


def test_measure_appending_to_a_version_1_file_names_the_command(tmp_path, capsys, phantom_files):
    path = write_v1(tmp_path / "m.csv", [v1_row("001")])
    before = path.read_bytes()
    code = main(
        [
            "measure",
            str(phantom_files["image"]),
            str(phantom_files["annotation"]),
            "--patient",
            "P1",
            "--observer",
            "A",
            "--csv",
            str(path),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"napari-pvm migrate-csv {path}" in err[0]
    assert "schema version 1" in err[0]
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]


def test_help_lists_the_command():
    import subprocess

    exe = str(Path(sys.executable).with_name("napari-pvm"))
    result = subprocess.run([exe, "migrate-csv", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "v1.bak" in result.stdout


def test_a_torn_last_line_is_a_plain_note(tmp_path):
    # a real process, so that Python and logging print as they would for a user
    import subprocess

    path = write_v1(tmp_path / "m.csv", [v1_row("001"), v1_row("002")[:-30]])
    exe = str(Path(sys.executable).with_name("napari-pvm"))
    done = subprocess.run([exe, "migrate-csv", str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and "from schema version 1 to 2: 1 rows kept" in done.stdout
    (note,) = done.stderr.splitlines()
    assert note.startswith("note: ") and "torn final line" in note and "quarantine" in note
    assert "Warning" not in done.stderr and ".py:" not in done.stderr
    assert (tmp_path / "m.csv.quarantine").read_text().splitlines()[-1] == v1_row("002")[:-30]


def test_plain_notes_prints_each_notice_once_and_nothing_on_a_refusal(capsys):
    import logging
    import warnings

    from napari_pvm._commands._notes import plain_notes
    from napari_pvm.core.store import StoreWarning

    with plain_notes():
        logging.getLogger("napari_pvm.core.store").warning("moved %d bytes", 7)
        warnings.warn(StoreWarning("moved 7 bytes"), stacklevel=1)
        warnings.warn(StoreWarning("removed a record"), stacklevel=1)
    assert capsys.readouterr().err == "note: moved 7 bytes\nnote: removed a record\n"
    with pytest.raises(ValueError), plain_notes():
        warnings.warn(StoreWarning("moved 7 bytes"), stacklevel=1)
        raise ValueError("refused")
    assert capsys.readouterr().err == ""
