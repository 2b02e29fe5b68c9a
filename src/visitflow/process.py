"""What a long-running VisitFlow process (API, worker, or both) does once start-up is over."""

from __future__ import annotations

import gc


def freeze_what_startup_built() -> None:
    """Leave what start-up built (modules, routes, templates, workflow definitions: ~190,000 objects that live as
    long as the process) out of the garbage collector's full passes. Each full pass otherwise walks all of them:
    75-105 ms with the event loop stopped, on one request in ten of the busiest pages (bench/README.md, "The
    garbage collector"). The worker's process holds the same kind of start-up objects, and its event loop runs
    the visits' workflow tasks."""
    gc.collect()
    gc.freeze()


def thaw() -> None:
    """Undo the freeze when a process goes on after serving (the tests), so what it leaves behind is collected."""
    gc.unfreeze()
