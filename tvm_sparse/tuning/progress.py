"""What :func:`tvm_sparse.tune` tells about its progress, to a display the caller owns.

``tune`` reports three phases: ``"dense"`` (MetaSchedule trials), ``"finalists"`` (the dense
finalists measured again) and ``"sparse"`` (sparse-kernel knobs). The base class shows nothing;
``tvm_sparse.commands.tuning_progress`` draws rich progress bars for the ``tune`` command.
"""

PHASES = ("dense", "finalists", "sparse")


class TuningProgress:
    """Receives :func:`tvm_sparse.tune`'s progress; this base class ignores it."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def start(self, phase, total):
        """``phase`` begins with ``total`` measurements to make (None when not known in advance)."""

    def advance(self, phase, count, errors=0, resumed=False):
        """``count`` measurements of ``phase`` are done (``errors`` of them failed; ``resumed`` from the log)."""

    def finish(self, phase, completed):
        """``phase`` ended after ``completed`` units of work."""
