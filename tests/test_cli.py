from typer.testing import CliRunner

from synth2real.cli import app

# the tables are drawn at the terminal's width; a wide one keeps every name on one line
runner = CliRunner(env={"COLUMNS": "200"})


def test_help_lists_every_command():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ["methods", "inspect", "translate", "train", "evaluate", "pilot", "demo"]:
        assert cmd in res.output


def test_help_on_a_narrow_terminal_keeps_option_names_whole():
    """Below PLAIN_HELP_BELOW columns rich's tables cut option names ("--sour…"); the
    plain layout wraps the descriptions instead. Wide terminals keep the tables."""
    from synth2real.cli import PLAIN_HELP_BELOW

    for columns in (40, PLAIN_HELP_BELOW - 1):
        res = CliRunner(env={"COLUMNS": str(columns)}).invoke(app, ["pilot", "--help"])
        assert res.exit_code == 0
        assert "…" not in res.output and "╭" not in res.output
        for name in ("--source-names", "--reference-names", "--unlabeled-names", "--recipes"):
            assert f"  {name} " in res.output, name
        top = CliRunner(env={"COLUMNS": str(columns)}).invoke(app, ["--help"])
        assert top.exit_code == 0 and "╭" not in top.output and "  translate " in top.output
    wide = CliRunner(env={"COLUMNS": str(PLAIN_HELP_BELOW)}).invoke(app, ["pilot", "--help"])
    assert wide.exit_code == 0 and "╭" in wide.output and "--source-names" in wide.output


def test_version_is_the_installed_one():
    from importlib.metadata import version

    import synth2real

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.output == f"synth2real {synth2real.__version__}\n"
    assert version("synth2real") == synth2real.__version__  # pyproject reads it from there


def test_methods_lists_the_registry():
    from synth2real.methods import list_methods

    res = runner.invoke(app, ["methods"])
    assert res.exit_code == 0
    for name in list_methods():
        assert name in res.output


def test_method_parameter_table_keeps_bracketed_text():
    """The docs hold ``[height, width]`` and ``[s1, s2, b1, b2]``: text, not rich markup,
    so the table shows them whole."""
    wide = CliRunner(env={"COLUMNS": "1000"})
    res = wide.invoke(app, ["methods", "cactif"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    assert "a pair ``[height, width]`` sets both" in text
    assert "FreeU factors ``[s1, s2, b1, b2]``" in text
    assert "Default [0.9, 0.2, 1.2, 1.4]" in text
    assert "(0.9, 0.2, 1.2, 1.4)" in text
