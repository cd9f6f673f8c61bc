"""Overlapping requests in flight together, for repl-overlap.sh.

  repl_overlap.py MODE PRIMARY_SOCKET SECONDARY_URI ROUNDS [PRIMARY_PID]
      MODE buffered: per round a 1 MiB write at O and a 4 KiB write inside it
      MODE mixed:    per round a 1 MiB write at O, WRITE_ZEROES (with and
                     without NO_HOLE) and TRIM inside it; ahead of them an
                     unrelated 1 MiB write (to the next round's region)
      MODE direct:   per round four 1 MiB writes of different patterns at O
  repl_overlap.py diff IMG_A IMG_B SIZE
      how many 4 KiB blocks and which 1 MiB regions differ

The requests of a round are submitted together, then all awaited. Round r
uses O = (r mod N) MiB, N = the export's whole MiB: a batch of N rounds
covers the disk once. After each batch: FLUSH, then every region is read
through both exports (protocol C: the secondary has applied all by then)
and a region that differs counts its round as diverged. Which request of a
round wins is not defined; only that both disks agree is. Exits 10 if any
round diverged, 2 if requests do not complete in time.

With PRIMARY_PID, every odd round is sent while the primary is stopped
(SIGSTOP, SIGCONT right after): with a send buffer that holds the whole
round, the primary then finds all of its requests at once and starts them
in one turn, as a busy primary does. Even rounds arrive as they are sent.
"""
import os, random, signal, socket, struct, sys, time
import nbd

MIB, BLK = 1 << 20, 4096
DEADLINE = 30  # seconds for one round's requests: generous, they take ms

def pattern(rnd, k, n):
    # distinct per round and per request, never zero: a lost or reordered
    # request always shows
    word = struct.pack("<II", 0xA5000000 | ((rnd & 0xffff) << 8) | (k + 1), (rnd * 7919 + k + 1) & 0xffffffff)
    return bytearray(word * (n // len(word)))

def run_round(h, reqs, stop_pid=None):
    """Submit every request of a round, then poll until all are done."""
    left, bufs = {}, []
    if stop_pid:
        os.kill(stop_pid, signal.SIGSTOP)
    try:
        submit(h, reqs, left, bufs)
        # all sent? (else the rest goes after SIGCONT: a weaker round)
        unsent = h.aio_get_direction() & nbd.AIO_DIRECTION_WRITE
    finally:
        if stop_pid:
            os.kill(stop_pid, signal.SIGCONT)
    end = time.monotonic() + DEADLINE
    while left:  # a cookie reports completion once, then it is retired
        if time.monotonic() > end:
            print(f"requests still not complete after {DEADLINE} s: {list(left.values())}")
            sys.exit(2)
        h.poll(1000)
        left = {c: v for c, v in left.items() if not h.aio_command_completed(c)}
    return bool(stop_pid and unsent)

def submit(h, reqs, left, bufs):
    for kind, off, n, arg in reqs:
        if kind == "write":
            buf = nbd.Buffer.from_bytearray(arg)
            bufs.append(buf)  # alive until the request completes
            left[h.aio_pwrite(buf, off)] = (kind, off, n)
        elif kind == "zero":
            left[h.aio_zero(n, off, flags=arg)] = (kind, off, n)
        else:
            left[h.aio_trim(n, off)] = (kind, off, n)

def make_round(mode, r, o, nxt, rng):
    big = ("write", o, MIB, pattern(r, 0, MIB))
    if mode == "buffered":
        inner = o + rng.randrange(MIB // BLK) * BLK
        return [big, ("write", inner, BLK, pattern(r, 1, BLK))]
    if mode == "mixed":
        # sizes on both sides of the 64 KiB line; NO_HOLE in half the
        # rounds, stopped ones and not
        zlen = rng.choice([4, 16, 64, 128, 256]) * 1024
        tlen = rng.choice([4, 32, 64, 192]) * 1024
        zoff = o + rng.randrange((MIB - zlen) // BLK + 1) * BLK
        toff = o + rng.randrange((MIB - tlen) // BLK + 1) * BLK
        flags = nbd.CMD_FLAG_NO_HOLE if r // 2 % 2 else 0
        # an unrelated 1 MiB write ahead (to the next round's region), as on
        # a busy primary: queued zeroes and trims need not wait for it
        # (not from a batch's last round: it would overwrite the first
        # round's region before that is compared)
        ahead = [("write", nxt, MIB, pattern(r, 9, MIB))] if nxt else []
        return ahead + [big, ("zero", zoff, zlen, flags), ("trim", toff, tlen, None)]
    return [big] + [("write", o, MIB, pattern(r, k, MIB)) for k in (1, 2, 3)]

def connect_big(path):
    """A libnbd handle on a unix socket whose send buffer holds a round."""
    sk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sk.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)  # capped by wmem_max
    if sk.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < 2 * (4 * MIB + 4096):
        try:  # root may go past wmem_max
            sk.setsockopt(socket.SOL_SOCKET, 32, 8 << 20)  # SO_SNDBUFFORCE
        except OSError:
            pass
    sk.connect(path)
    h = nbd.NBD()
    h.connect_socket(sk.detach())  # libnbd owns the descriptor now
    return h

def rounds(mode, psock, suri, nrounds, stop_pid):
    h, s = connect_big(psock), nbd.NBD()
    s.connect_uri(suri)
    size = h.get_size()
    assert s.get_size() == size, (size, s.get_size())
    if mode == "mixed":
        assert h.can_zero() and h.can_trim(), "export offers no WRITE_ZEROES/TRIM"
    nreg = size // MIB
    rng = random.Random(1234)
    diverged, unsent = [], 0
    for first in range(0, nrounds, nreg):
        batch = range(first, min(first + nreg, nrounds))
        for r in batch:
            o, nxt = r % nreg * MIB, (r + 1) % nreg * MIB
            unsent += run_round(h, make_round(mode, r, o, nxt, rng), r % 2 and stop_pid)
        h.flush()
        for r in batch:
            o = (r % nreg) * MIB
            if h.pread(MIB, o) != s.pread(MIB, o):
                diverged.append(r)
    h.shutdown()
    s.shutdown()
    if unsent:
        print(f"{mode}: {unsent} stopped rounds were not all sent before SIGCONT")
    print(f"{mode}: {len(diverged)} of {nrounds} rounds diverged: {diverged[:20]}")
    return 10 if diverged else 0

def diff(a, b, size):
    blocks, regions = 0, []
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for r in range((size + MIB - 1) // MIB):
            n = min(MIB, size - r * MIB)
            x, y = fa.read(n), fb.read(n)
            d = sum(1 for i in range(0, n, BLK) if x[i:i + BLK] != y[i:i + BLK])
            if d:
                regions.append(r)
                blocks += d
    print(f"{blocks} 4 KiB blocks differ, in {len(regions)} 1 MiB regions: {regions[:20]}")

if sys.argv[1] == "diff":
    diff(sys.argv[2], sys.argv[3], int(sys.argv[4]))
else:
    sys.exit(rounds(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]),
                    int(sys.argv[5]) if len(sys.argv) > 5 else None))
