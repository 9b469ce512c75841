"""``--json FILE`` and ``--plot FILE.png`` of the measuring commands: their results for notebooks and people."""

import json


def add_result_file_arguments(parser):
    """Add ``--json FILE`` and ``--plot FILE.png`` to a command's parser."""
    parser.add_argument("--json", metavar="FILE", help="also write the measurements as JSON here")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the measurements into this PNG (matplotlib)")


def write_result_files(args, console, data, draw):
    """Write ``data`` to ``args.json`` and ``draw(data, path)`` to ``args.plot``, where asked, and say so.

    Parameters
    ----------
    args : argparse.Namespace
        With ``json`` and ``plot`` (None when not asked).
    console : rich.console.Console
    data : dict
        JSON-able measurements.
    draw : callable
        ``draw(data, path)`` saves the figure (a function of :mod:`tvm_sparse.bench.plots`).
    """
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=1)
        console.print(f"wrote {args.json}", highlight=False)
    if args.plot:
        draw(data, args.plot)
        console.print(f"wrote {args.plot}", highlight=False)
