"""Progress on stderr: a rich bar on a terminal, plain lines in a log, nothing when off."""

import pytest

from synth2real import progress
from synth2real.progress import LOG_EVERY_S, LogBar, progress_bar


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_log_bar_prints_a_line_at_most_every_interval(capsys):
    clock = Clock()
    bar = LogBar(100, "training", unit="img", every=60, clock=clock)
    for _ in range(10):  # 10 steps in 50 s: under the interval, nothing printed
        clock.t += 5
        bar.advance()
    assert capsys.readouterr().err == ""
    clock.t += 10  # 60 s in, 11 done
    bar.advance(loss="0.5")
    line = capsys.readouterr().err
    assert line == "training: 11/100  (11%)  0.18 img/s  0:01:00 elapsed  ETA 0:08:05  loss=0.5\n"
    clock.t += 30
    bar.advance()  # 30 s after the last line: silent
    assert capsys.readouterr().err == ""
    clock.t += 30
    bar.update(completed=50)
    assert capsys.readouterr().err.startswith("training: 50/100  (50%)")


def test_log_bar_rate_counts_only_this_call_on_resume(capsys):
    """A resumed job starts at ``completed``: its ETA comes from the steps done now."""
    clock = Clock()
    bar = LogBar(1000, "training", completed=900, every=1, clock=clock)
    clock.t += 10
    bar.advance(10)  # 10 steps in 10 s -> 1/s, 90 left
    assert "910/1000  (91%)  0:00:10 elapsed  ETA 0:01:30" in capsys.readouterr().err


def test_log_bar_without_total(capsys):
    clock = Clock()
    bar = LogBar(None, "scanning", every=1, clock=clock)
    clock.t += 2
    bar.advance(3)
    assert capsys.readouterr().err == "scanning: 3  0:00:02 elapsed\n"


@pytest.mark.parametrize("env", [{}, {"S2R_PROGRESS_EVERY": "5"}, {"S2R_PROGRESS_EVERY": "x"}])
def test_progress_bar_in_a_log_yields_log_lines(monkeypatch, env):
    """pytest's stderr is no terminal, as a log file or a batch job's is."""
    monkeypatch.delenv("S2R_PROGRESS_EVERY", raising=False)
    monkeypatch.delenv("S2R_NO_PROGRESS", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with progress_bar(10, "x") as bar:
        assert isinstance(bar, LogBar)
        assert bar.every == (5.0 if env.get("S2R_PROGRESS_EVERY") == "5" else LOG_EVERY_S)


def test_progress_switched_off_prints_nothing(monkeypatch, capsys):
    monkeypatch.setenv("S2R_PROGRESS_EVERY", "0")
    for enabled, env in ((False, ""), (True, "1")):
        monkeypatch.setenv("S2R_NO_PROGRESS", env)
        with progress_bar(3, "x", enabled=enabled) as bar:
            assert not isinstance(bar, LogBar)
            bar.advance(3, loss=1)
    monkeypatch.setenv("S2R_NO_PROGRESS", "")
    with progress_bar(3, "x") as bar:  # interval 0: every step is a line
        bar.advance()
        bar.advance()
    assert capsys.readouterr().err.count("x: ") == 2
    assert progress.progress_enabled()
