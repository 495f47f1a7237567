from typer.testing import CliRunner

from synth2real.cli import app

# the tables are drawn at the terminal's width; a wide one keeps every name on one line
runner = CliRunner(env={"COLUMNS": "200"})


def test_help_lists_every_command():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ["methods", "inspect", "translate", "train", "evaluate", "pilot", "demo"]:
        assert cmd in res.output


def test_methods_lists_the_registry():
    from synth2real.methods import list_methods

    res = runner.invoke(app, ["methods"])
    assert res.exit_code == 0
    for name in list_methods():
        assert name in res.output
