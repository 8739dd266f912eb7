"""Progress bars: plain lines when the stream is not a terminal."""
import io

from synth.progress import LineProgress, progress_bar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_not_a_terminal_gets_one_line_per_tenth_and_no_carriage_return():
    stream = io.StringIO()
    items = list(progress_bar(range(200), desc="make-dataset", unit="sample", stream=stream))
    assert items == list(range(200))
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("make-dataset: 20/200 sample (10%)")
    assert lines[-1].startswith("make-dataset: 200/200 sample (100%)")


def test_update_and_close_report_the_end_once():
    stream = io.StringIO()
    with progress_bar(total=7, desc="runs", stream=stream) as bar:
        for _ in range(5):
            bar.update()
    lines = stream.getvalue().splitlines()
    # With 7 steps every step crosses a tenth; closing adds nothing, 5/7 was just written.
    assert [line.split()[1] for line in lines] == ["1/7", "2/7", "3/7", "4/7", "5/7"]
    stream = io.StringIO()
    bar = progress_bar(total=100, stream=stream)
    bar.update(15)
    bar.update(3)
    bar.close()
    bar.close()
    assert [line.split()[0] for line in stream.getvalue().splitlines()] == ["15/100", "18/100"]


def test_unknown_total_reports_at_powers_of_ten():
    stream = io.StringIO()
    for _ in progress_bar(iter(range(250)), stream=stream):
        pass
    assert [line.split()[0] for line in stream.getvalue().splitlines()] == ["1", "10", "100", "250"]


def test_terminal_gets_a_tqdm_bar_and_disable_shows_nothing():
    terminal = _Terminal()
    bar = progress_bar(total=3, stream=terminal)
    assert not isinstance(bar, LineProgress)
    bar.update(3)
    bar.close()
    assert "\r" in terminal.getvalue()
    quiet = io.StringIO()
    assert list(progress_bar(range(3), disable=True, stream=quiet)) == [0, 1, 2]
    assert quiet.getvalue() == ""
