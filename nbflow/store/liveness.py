"""Is the process that owns a run still alive? Used to mark runs of dead processes Crashed.

A pid alone is not enough: the OS reuses pids, so a run records its process's start
time too, and a live pid with a different start time is another process.
"""

from __future__ import annotations

import os
import sys

#: start times closer than this are the same process (boot time has 1 s resolution).
START_TOLERANCE_S = 2.0

_boot_time: float | None = None
_clock_ticks: int | None = None


def _read_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state first), or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # Field 2 is the command name in parentheses and may itself contain spaces or ')'.
    return raw[raw.rfind(")") + 2:].split()


def _boot() -> tuple[float, int] | None:
    global _boot_time, _clock_ticks
    if _boot_time is None:
        try:
            with open("/proc/stat", "rb") as f:
                for line in f:
                    if line.startswith(b"btime "):
                        _boot_time = float(line.split()[1])
                        break
            _clock_ticks = os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            return None
    if _boot_time is None or not _clock_ticks:
        return None
    return _boot_time, _clock_ticks


def process_start_time(pid: int) -> float | None:
    """When process `pid` started, in epoch seconds (Linux); None elsewhere or if unknown."""
    if not sys.platform.startswith("linux"):
        return None
    fields = _read_stat(pid)
    boot = _boot()
    if fields is None or boot is None or len(fields) < 20:
        return None
    boot_time, ticks = boot
    return boot_time + int(fields[19]) / ticks  # field 22: starttime, in clock ticks since boot


def process_key(host: str, pid: int, process_start: float | None) -> str:
    """A name for one process that outlives it: host, pid and start time (1/100 s), e.g. for files."""
    return f"{host}-{pid}-{round((process_start or 0.0) * 100)}"


def parse_process_key(key: str) -> tuple[str, int, float] | None:
    """(host, pid, process_start) of a process_key(), or None when `key` is not one."""
    host, _, rest = key.rpartition("-")
    host, _, pid = host.rpartition("-")
    if not host or not pid.isdigit() or not rest.isdigit():
        return None
    return host, int(pid), int(rest) / 100


def process_command(pid: int) -> str:
    """The command line of `pid` with spaces between arguments ("" when unknown; Linux only)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def is_process_alive(pid: int, process_start: float | None) -> bool:
    """Whether `pid` runs and, when both start times are known, is the process that started then."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _windows_process_alive(pid)  # os.kill(pid, 0) would terminate it there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    except OSError:
        return False
    if sys.platform.startswith("linux"):
        fields = _read_stat(pid)
        if fields is None:  # exited between the two checks, unless /proc is not mounted
            return not os.path.exists("/proc/self/stat")
        if fields[0] in ("Z", "X"):
            return False  # exited, not yet reaped by its parent
    if process_start:  # 0.0 / None: the writer could not tell its start time
        started = process_start_time(pid)
        if started is not None and abs(started - process_start) > START_TOLERANCE_S:
            return False
    return True


def _windows_process_alive(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return kernel32.GetLastError() == 5  # ERROR_ACCESS_DENIED: it exists
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)
