"""The console the commands print their tables and the progress of their long steps on."""

import time
from contextlib import contextmanager

from rich.console import Console


def wide_console(min_width):
    """A rich console at least ``min_width`` columns wide.

    rich fits a table to the terminal's width, or to 80 columns when the output goes to a pipe or
    a log file, by cutting cells short (``mobi…``, ``5.4…``). A table of figures must keep them
    whole, so a narrower console is widened: its lines then run past a narrow terminal's edge.

    Parameters
    ----------
    min_width : int
        Columns the command's widest table needs.

    Returns
    -------
    rich.console.Console
    """
    return Console(width=max(Console().width, min_width))


@contextmanager
def status_step(console, text):
    """Say which long step runs while the block runs, and how long it took when it is done.

    On a terminal a spinner shows ``text``. A pipe or a log file gets no spinner, so ``text`` is
    printed as a line when the step starts: a log shows the step that is running. Either way the
    line ``text: N s`` follows when the block ends without an error.

    Parameters
    ----------
    console : rich.console.Console
    text : str
        What the step does (``"compiling resnet18 for llvm"``).
    """
    start = time.perf_counter()
    if console.is_terminal:
        with console.status(text):
            yield
    else:
        console.print(f"{text} ...", markup=False, highlight=False)
        yield
    console.print(f"{text}: {time.perf_counter() - start:.1f} s", markup=False, highlight=False)
