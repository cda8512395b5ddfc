"""The C heap of a bodycam process: freed chunk buffers are kept for the next chunk.

Every process here moves evidence in buffers of 256 KiB to a few MiB: the recorder seals
and sends segments, the dock receives and stores them, verify and export read them. With
glibc's defaults such a buffer is either mapped and unmapped for each use (above the
128 KiB mmap threshold) or, once the threshold has adapted, handed back to the kernel by
heap trimming as soon as it is freed — and the next buffer faults the same pages in
again. Measured here: reading a file in 256 KiB pieces and copying each into an MQTT
packet, as the device's sync does, cost 0.85 s of CPU per GB with the defaults and 0.07
with buffers below 4 MiB taken from the heap and up to 16 MiB of freed heap kept.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

# mallopt(3) parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 4 << 20  # buffers below this come from the heap and go back to it
TRIM_THRESHOLD = 16 << 20  # freed heap kept for reuse; a resident cost of at most this


def keep_chunk_buffers() -> bool:
    """Set the process's heap for chunked evidence I/O; True if it was set, False where
    the C library is not glibc (musl, macOS: their allocators do otherwise, nothing to
    set). Process-wide: called once, by the command line, before any work starts."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and \
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not done:
        log.debug("mallopt refused the chunk-buffer settings; the defaults stay")
    return done
