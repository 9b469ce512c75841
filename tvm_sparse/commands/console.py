"""The console the commands print their tables on."""

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
