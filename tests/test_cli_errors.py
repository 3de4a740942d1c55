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
