"""Every command's bad-path error is one clean line naming the path, even when the path
looks like Rich markup (it used to raise MarkupError instead)."""

import pytest
from typer.testing import CliRunner

from optforge.cli import app

BAD = "/nonexistent/[/x]run[bold]"


@pytest.mark.parametrize("args", [
    ["report", BAD], ["export", BAD, "--rank", "1"], ["runs", "show", BAD],
    ["bench", "--resume", BAD], ["search", "--resume", BAD],
])
def test_bad_run_directory_is_a_clean_error(args):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith("error: ")
    assert BAD in result.output.replace("\n", "")


BAD_PROGRAM = "def bad(w, g, lr):\n    update = lr * foo(g)\n    return update\n"


@pytest.mark.parametrize("command", [
    ["search", "--evaluations", "2", "--init"], ["bench", "--tasks", "quadratic", "--optimizers"],
    ["export"],
])
def test_a_malformed_program_file_is_a_clean_error_and_creates_nothing(tmp_path, command):
    bad = tmp_path / "bad.py"
    bad.write_text(BAD_PROGRAM)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [*command, str(bad), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith("error: ")
    assert f"{bad}: line 2, column " in result.output and "unknown op 'foo'" in result.output
    assert not out.exists()
