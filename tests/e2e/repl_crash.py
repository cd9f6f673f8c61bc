"""Clients and checkers for the crash tests.

  repl_crash.py epochs URI LOG        write epochs of 16 concurrent writes to
                                      fresh blocks, each epoch closed by FLUSH,
                                      until killed; LOG gets each finished epoch
  repl_crash.py check-epochs IMG N    the image holds every block of every
                                      epoch before the newest one it holds any
                                      block of
  repl_crash.py acked URI LOG         overwrite 256 blocks with increasing
                                      stamps, QD16; LOG gets each acked write
  repl_crash.py check-acked IMG LOG   the image holds every acked write (or a
                                      newer one)
"""
import struct, sys
import nbd

BLK, PER = 4096, 16

def stamp(a, b):
    return struct.pack("<QQ", a + 1, b + 1) * (BLK // 16)

def epochs(uri, logf):
    h = nbd.NBD(); h.connect_uri(uri)
    log = open(logf, "w")
    k = 0
    while (k + 1) * PER * BLK < h.get_size():
        bufs = [nbd.Buffer.from_bytearray(bytearray(stamp(k, j))) for j in range(PER)]
        left = {h.aio_pwrite(bufs[j], (k * PER + j) * BLK) for j in range(PER)}
        while left:  # a cookie reports completion once, then it is retired
            h.poll(-1)
            left = {c for c in left if not h.aio_command_completed(c)}
        h.flush()
        log.write(f"{k}\n"); log.flush()
        k += 1

def check_epochs(img, n):
    present = {}
    with open(img, "rb") as f:
        for k in range(n + 2):
            for j in range(PER):
                f.seek((k * PER + j) * BLK)
                present[(k, j)] = f.read(BLK) == stamp(k, j)
    newest = max((k for (k, j), p in present.items() if p), default=-1)
    missing = [(k, j) for (k, j), p in present.items() if k < newest and not p]
    print(f"newest epoch on the secondary: {newest}; missing before it: {missing[:10]}")
    return 0 if not missing and newest >= 0 else 1

def acked(uri, logf):
    h = nbd.NBD(); h.connect_uri(uri)
    log = open(logf, "w")
    pending, i = {}, 0
    try:
        while True:
            while len(pending) < 16:
                blk = i % 256
                buf = nbd.Buffer.from_bytearray(bytearray(stamp(i, blk)))
                pending[h.aio_pwrite(buf, blk * BLK)] = (i, blk, buf)
                i += 1
            h.poll(-1)
            for c in [c for c in pending if h.aio_command_completed(c)]:
                n, blk, _ = pending.pop(c)
                log.write(f"{n} {blk}\n"); log.flush()
    except nbd.Error as e:
        print("client stopped:", e)

def check_acked(img, logf):
    last = {}
    for line in open(logf):
        n, blk = map(int, line.split())
        last[blk] = max(last.get(blk, -1), n)
    bad = 0
    with open(img, "rb") as f:
        for blk, n in last.items():
            f.seek(blk * BLK)
            got = struct.unpack("<Q", f.read(8))[0] - 1
            if got < n:  # an older write: an acknowledged one was lost
                bad += 1
    print(f"{sum(1 for _ in open(logf))} acked writes, {len(last)} blocks checked, {bad} lost")
    return 1 if bad or not last else 0

mode = sys.argv[1]
if mode == "epochs":
    epochs(sys.argv[2], sys.argv[3])
elif mode == "check-epochs":
    sys.exit(check_epochs(sys.argv[2], int(sys.argv[3])))
elif mode == "acked":
    acked(sys.argv[2], sys.argv[3])
else:
    sys.exit(check_acked(sys.argv[2], sys.argv[3]))
