"""The cyclic garbage collector, paused where a step builds many objects that form no cycles.

Such a step (parsing a digest; reading the digests from the state, ten years of them in a build
over every digest, and assembling their papers) makes objects that live until it ends, so the
collector finds nothing; but it walks all of them again each time their number grows by a
quarter. Reference counting still frees everything as usual, and the collector is itself again
when the step ends, however it ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
