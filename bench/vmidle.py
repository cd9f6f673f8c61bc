"""The guest's idle state, shared by bench/run and bench/repl.

BENCH_HALT_POLL_NS=N: how long an idle virtual CPU polls before it halts
(the guest's cpuidle-haltpoll driver; the kernel's default is 200000, and a
VM provider may boot with 0). A halted virtual CPU takes tens of
microseconds to wake, and every NBD request wakes a process on another CPU
at least once, so this decides latency as much as the code does
(bench/README.md, "Guest halt polling")."""
import atexit, os, sys

HALT_POLL = "/sys/module/haltpoll/parameters/guest_halt_poll_ns"

def idle_state():
    """The idle driver and its polling time, for a results heading."""
    try:
        with open("/sys/devices/system/cpu/cpuidle/current_driver") as f:
            drv = f.read().strip()
    except OSError:
        return "cpuidle: none"
    try:
        with open(HALT_POLL) as f:
            return f"cpuidle: {drv}, guest_halt_poll_ns {f.read().strip()}"
    except OSError:
        return f"cpuidle: {drv}"

def set_halt_poll():
    """Applies BENCH_HALT_POLL_NS, if set, until the script exits."""
    want = os.environ.get("BENCH_HALT_POLL_NS")
    if not want:
        return
    try:
        with open(HALT_POLL) as f:
            old = f.read().strip()
        with open(HALT_POLL, "w") as f:
            f.write(want)
    except OSError as e:
        sys.exit(f"BENCH_HALT_POLL_NS: cannot set {HALT_POLL}: {e.strerror}")
    def restore():
        with open(HALT_POLL, "w") as f:
            f.write(old)
    atexit.register(restore)
