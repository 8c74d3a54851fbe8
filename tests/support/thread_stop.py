#!/usr/bin/env python3
"""Stop ONE thread of a running process for a while, the others running on (for /livez tests).

  thread_stop.py PID THREAD_NAME SECONDS

Finds the thread of PID whose name (/proc/PID/task/TID/comm) is THREAD_NAME, attaches to that
thread alone with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT stop only the tracee thread, unlike
SIGSTOP, which stops the whole process), keeps it stopped SECONDS, then detaches (it runs on).
Prints "stopped TID" once it is stopped and "resumed TID" at the end.  Exit status 0; 2 when the
thread is not found; 3 when ptrace is not permitted here (the caller may skip its check).
"""
import ctypes
import os
import sys
import time

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000


def main():
    pid, name, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    tid = None
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
            if f.read().strip() == name:
                tid = int(t)
    if tid is None:
        print("no thread named %s in process %d" % (name, pid), file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    if libc.ptrace(PTRACE_SEIZE, tid, None, None) != 0:
        print("ptrace(SEIZE, %d): %s" % (tid, os.strerror(ctypes.get_errno())), file=sys.stderr)
        return 3
    if libc.ptrace(PTRACE_INTERRUPT, tid, None, None) != 0:
        print("ptrace(INTERRUPT, %d): %s" % (tid, os.strerror(ctypes.get_errno())), file=sys.stderr)
        return 3
    os.waitpid(tid, WALL)
    print("stopped %d" % tid, flush=True)
    time.sleep(secs)
    if libc.ptrace(PTRACE_DETACH, tid, None, None) != 0:
        print("ptrace(DETACH, %d): %s" % (tid, os.strerror(ctypes.get_errno())), file=sys.stderr)
    print("resumed %d" % tid, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
