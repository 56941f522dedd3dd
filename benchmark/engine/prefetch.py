"""Loading the next chunk while the current one is processed (issue 13).

``prefetched(load, items)`` yields ``(item, load(item))`` in the order of ``items``; one
background thread runs ``load`` (decoding and alignment: OpenCV and NumPy release the GIL) up to
``ahead`` items before the consumer. Memory bound: at most ``ahead + 1`` loaded items are held
here (the one handed out and those loaded ahead), plus the one the consumer still references
while it asks for the next: with ``ahead=1`` and 512-image chunks of 112x96 faces, three chunks of
~66 MB. An exception in ``load`` is re-raised, unchanged (the same one-line error naming the
image), when the consumer reaches that item; nothing after it is handed out, and loads not yet
started are cancelled when the consumer stops early.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Tuple, TypeVar

Item = TypeVar("Item")
Loaded = TypeVar("Loaded")

AHEAD = 1  # chunks loaded ahead of the one being processed


def prefetched(load: Callable[[Item], Loaded], items: Iterable[Item], ahead: int = AHEAD
               ) -> Iterator[Tuple[Item, Loaded]]:
    """``(item, load(item))`` for each item in order; ``ahead`` = 0 loads in the caller's thread."""
    if ahead < 0:
        raise ValueError(f"ahead must be >= 0, got {ahead}")
    if ahead == 0:
        for item in items:
            yield item, load(item)
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fhbench-prefetch")
    pending = deque()
    try:
        for item in items:
            pending.append((item, pool.submit(load, item)))
            if len(pending) > ahead:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
