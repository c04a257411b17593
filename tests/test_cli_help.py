"""``napari-pvm SUBCOMMAND --help`` works for every subcommand (argparse %-formats help texts)."""

import pytest

from napari_pvm.cli import COMMANDS, main


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    out, err = capsys.readouterr()
    assert exc.value.code == 0
    assert "Traceback" not in err and err == ""
    assert out.startswith(f"usage: napari-pvm {command}")
