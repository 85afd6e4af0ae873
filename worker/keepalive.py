"""Keep a model loaded while it is used; unload it after an idle keep-alive.

Like Ollama's ``keep_alive``: after the last job ends, a timer runs for
``seconds``; if no job starts meanwhile the model is unloaded (its memory goes
back to the system), and the next job loads it again before it runs.
``seconds == 0`` keeps the model loaded for good. The timer is a sleeping
thread, so an idle worker burns nothing while it waits.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger("mtor.worker.keepalive")

DEFAULT_KEEP_ALIVE_S = 300.0


MADV_DONTNEED = 4


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not glibc (musl): nothing to trim
        return None


def trim_heap() -> None:
    """Hand the heap's free pages back to the OS (glibc keeps them otherwise)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def release_freed_memory(libraries: tuple[str, ...] = ()) -> None:
    """Collect garbage and hand free heap pages back to the OS (glibc keeps them
    otherwise); then let the kernel reclaim the resident code of ``libraries``
    (path fragments of shared objects, e.g. "/onnxruntime/"), which an unloaded
    model no longer runs and which pages back in on the next load."""
    gc.collect()
    libc = _libc()
    if libc is None:
        return
    libc.malloc_trim(0)
    if libraries:
        _page_out(libc, libraries)


def _page_out(libc: ctypes.CDLL, libraries: tuple[str, ...]) -> None:
    """Drop the resident pages of the libraries' executable segments.

    Only ``r-xp`` mappings: the text of position-independent code is never
    written (relocations live in the data segments, which are left alone), so
    its pages are exact copies of the file and fault back in from it on the
    next call. MADV_PAGEOUT would skip them (they sit in the page cache).
    """
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    try:
        with open("/proc/self/maps") as fh:
            maps = fh.read().splitlines()
    except OSError:
        return
    for line in maps:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or fields[1] != "r-xp" or ".so" not in fields[5]:
            continue
        if not any(part in fields[5] for part in libraries):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_DONTNEED)


class KeepAlive:
    """Tracks jobs in flight and unloads after ``seconds`` without any."""

    def __init__(
        self,
        seconds: float,
        load: Callable[[], None],
        unload: Callable[[], None],
        name: str = "model",
        libraries: tuple[str, ...] = (),
    ) -> None:
        if seconds < 0:
            raise ValueError(f"keep_alive must be >= 0 seconds (0 keeps the model loaded), got {seconds}")
        self.seconds = seconds
        self.name = name
        self.libraries = libraries  # shared objects only the model uses (paged out while unloaded)
        self._load = load
        self._unload = unload
        self._lock = threading.Lock()
        self._active = 0
        self._loaded = False
        self._timer: threading.Timer | None = None
        self._armed = 0  # which timer is current; an older one that fires late does nothing
        self.unloads = 0
        self.reloads = 0
        self.last_reload_s: float | None = None

    @property
    def loaded(self) -> bool:
        return self._loaded

    def started(self) -> None:
        """The model was loaded at start: count idle time from now."""
        with self._lock:
            self._loaded = True
            self._arm()

    def try_acquire(self) -> bool:
        """Claim the loaded model for one job without blocking; False if it must be (re)loaded."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if not self._loaded:
                return False
            self._active += 1
            self._disarm()
            return True
        finally:
            self._lock.release()

    def acquire(self) -> None:
        """Claim the model for one job, loading it first if it was unloaded (blocking)."""
        with self._lock:
            self._active += 1
            self._disarm()
            if self._loaded:
                return
            started = time.perf_counter()
            try:
                self._load()
            except BaseException:
                self._active -= 1
                raise
            self._loaded = True
            self.reloads += 1
            self.last_reload_s = time.perf_counter() - started
            log.info("reloaded the %s in %.2f s", self.name, self.last_reload_s)

    def release(self) -> None:
        """One job ended; start the idle timer when it was the last."""
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self._arm()

    def close(self) -> None:
        with self._lock:
            self._disarm()
            self._loaded = False

    def _arm(self) -> None:
        self._disarm()
        if self.seconds <= 0 or not self._loaded:
            return
        self._armed += 1
        timer = threading.Timer(self.seconds, self._expire, args=(self._armed,))
        timer.daemon = True
        timer.name = "mtor-keep-alive"
        self._timer = timer
        timer.start()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, armed: int) -> None:
        with self._lock:
            if armed != self._armed or self._active or not self._loaded:
                return
            self._timer = None
            try:
                self._unload()
            except Exception:  # unloading must never kill the worker; the model stays loaded
                log.exception("unloading the idle %s failed", self.name)
                return
            self._loaded = False
            self.unloads += 1
        release_freed_memory(self.libraries)
        log.info("unloaded the %s after %g s idle", self.name, self.seconds)
