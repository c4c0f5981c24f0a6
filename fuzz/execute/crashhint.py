"""A word when a kernel takes the `kfuzz` process down.

Without `--isolate`, a kernel that segfaults or aborts kills kfuzz itself: exit status 139 and,
by default, not a word. `install` turns on `faulthandler` (the Python stack at the crash, which
names the kernel's file and line) writing into a pipe, and starts a small watcher process that
copies whatever arrives to stderr and, if anything did, ends with a hint to rerun with
`--isolate`. Nothing in the dying process can print after the fault; the watcher can. When
kfuzz ends normally the pipe closes empty and the watcher exits without a word.
"""

from __future__ import annotations

import faulthandler
import os
import subprocess
import sys

HINT = ("kfuzz: a kernel crashed the kfuzz process{what}; rerun with --isolate so that a crash "
        "becomes a finding (stored and shrunk) and the run goes on\n")

_WATCHER = r"""
import os, sys
head = b""
while True:
    try:
        chunk = os.read(0, 65536)
    except OSError:
        break
    if not chunk:
        break
    head = (head + chunk)[:4096]  # faulthandler writes its first line in pieces
    os.write(2, chunk)
if head:
    first = head.split(b"\n", 1)[0].decode(errors="replace")
    what = first.split(": ", 1)[1] if first.startswith("Fatal Python error: ") else ""
    os.write(2, sys.argv[1].format(what=f" ({what})" if what else "").encode())
"""

_installed = False


def install() -> None:
    """Print the stack and the `--isolate` hint if this process dies of a fatal signal
    (SIGSEGV, SIGFPE, SIGABRT, SIGBUS, SIGILL). Once per process; does nothing if the watcher
    cannot start."""
    global _installed
    if _installed:
        return
    read, write = os.pipe()
    try:
        subprocess.Popen([sys.executable, "-I", "-S", "-c", _WATCHER, HINT], stdin=read,
                         stdout=subprocess.DEVNULL, close_fds=True)
    except OSError:
        os.close(write)
        return
    finally:
        os.close(read)
    faulthandler.enable(file=write)  # the fd stays open for the life of the process
    _installed = True
