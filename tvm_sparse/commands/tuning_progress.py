"""Rich progress bars for ``tvm-sparse tune``: one bar per tuning phase, with its error count."""

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tvm_sparse.tuning import TuningProgress

#: The bar label of each phase of :func:`tvm_sparse.tune`.
PHASE_LABELS = {
    "dense": "dense (MetaSchedule)",
    "finalists": "dense finalists, again",
    "sparse": "sparse kernel knobs",
}


class RichTuningProgress(TuningProgress):
    """Shows :func:`tvm_sparse.tune`'s phases as rich progress bars (on stderr's console by default)."""

    def __init__(self, console=None):
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("errors {task.fields[errors]}"), TimeElapsedColumn())
        self.bars = Progress(*columns, console=console, transient=False)
        self.tasks = {}
        self.errors = {}

    def __enter__(self):
        self.bars.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self.bars.__exit__(*exc_info)

    def start(self, phase, total):
        self.errors[phase] = 0
        self.tasks[phase] = self.bars.add_task(PHASE_LABELS[phase], total=total, errors=0)

    def advance(self, phase, count, errors=0, resumed=False):
        self.errors[phase] += errors
        self.bars.update(self.tasks[phase], advance=count, errors=self.errors[phase])

    def finish(self, phase, completed):
        self.bars.update(self.tasks[phase], total=completed, completed=completed)
