"""Protocol features through libnbd, plus the oldest handshake path over a
raw socket. Usage: protocol.py SOCKET"""
import errno, os, socket, struct, sys
import nbd

SOCK = sys.argv[1]
URI = f"nbd+unix:///?socket={SOCK}"
M = 1 << 20

def handle(structured=True, strict=True):
    h = nbd.NBD()
    if not strict:
        h.set_strict_mode(0)
    h.set_request_structured_replies(structured)
    h.add_meta_context("base:allocation")
    h.connect_uri(URI)
    return h

def expect_err(fn, code, what):
    try:
        fn()
    except nbd.Error as e:
        assert e.errnum == code, (what, e)
        print(f"ok   {what}: {errno.errorcode[code]}")
        return
    raise SystemExit(f"FAIL {what}: no error")

h = handle()
size = h.get_size()
assert not h.can_cache(), "CACHE is not offered"

big = os.urandom(64 * M)
h.pwrite(big, 0)
assert h.pread(64 * M, 0) == big
print("ok   64 MiB write and read (the maximum block size)")
# over the maximum: libnbd refuses that itself, so huge.sh sends it raw
h2 = handle(strict=False)
expect_err(lambda: h2.pread(0, 0), errno.EINVAL, "zero-length read")
chunks = []
got = h.pread_structured(65536, 4096, lambda sub, off, status, err: chunks.append((off, len(sub))),
                         nbd.CMD_FLAG_DF)
assert got == big[4096:4096 + 65536] and chunks == [(4096, 65536)], chunks
print("ok   read with DF (one chunk)")

h.pwrite(b"f" * 4096, 40 * M, nbd.CMD_FLAG_FUA)
assert h.pread(4096, 40 * M) == b"f" * 4096
print("ok   FUA write")

h.zero(M, 0, nbd.CMD_FLAG_FAST_ZERO)
assert h.pread(M, 0) == bytes(M)
print("ok   fast zero")
h.pwrite(b"z" * M, 48 * M)
h.zero(M, 48 * M, nbd.CMD_FLAG_NO_HOLE)
assert h.pread(M, 48 * M) == bytes(M)
ext = []
h.block_status(M, 48 * M, lambda ctx, off, e, err: ext.append(e))
assert ext[0][1] == 0, f"NO_HOLE must leave the range allocated: {ext}"
print("ok   zero with NO_HOLE keeps allocation")
h.zero(M, 48 * M)
ext = []
h.block_status(M, 48 * M, lambda ctx, off, e, err: ext.append(e))
assert ext[0][1] & 1, f"zero without NO_HOLE may punch: {ext}"
print("ok   zero without NO_HOLE punches")

# simple replies: reads, errors, and no meta context
s = handle(structured=False, strict=False)
assert not s.can_meta_context("base:allocation")
assert s.pread(4096, 40 * M) == b"f" * 4096
expect_err(lambda: s.pread(4096, size), errno.EINVAL, "simple reply: read past the end")
assert s.pread(4096, 40 * M) == b"f" * 4096  # stream still in step
print("ok   simple replies")

# multi-conn: a write on one connection, FLUSH on another, read on a third
hs = [handle() for _ in range(3)]
assert all(x.can_multi_conn() for x in hs)
hs[0].pwrite(b"m" * 4096, 60 * M)
hs[1].flush()
assert hs[2].pread(4096, 60 * M) == b"m" * 4096
print("ok   multi-conn")

# many requests in flight on one connection, completed in any order
cookies = {}
for i in range(256):
    buf = nbd.Buffer(4096)
    cookies[h.aio_pread(buf, (i * 7919 % 4096) * 4096)] = buf
while cookies:
    h.poll(-1)
    for c in [c for c in cookies if h.aio_command_completed(c)]:
        del cookies[c]
print("ok   256 requests in flight")
for x in [h, h2, s] + hs:
    x.shutdown()

# NBD_OPT_EXPORT_NAME, with and without NO_ZEROES
for flags, tail in ((3, 0), (1, 124)):
    k = socket.socket(socket.AF_UNIX); k.connect(SOCK); k.settimeout(5)
    g = b""
    while len(g) < 18:
        g += k.recv(18 - len(g))
    k.sendall(struct.pack(">I", flags) + struct.pack(">QII", 0x49484156454F5054, 1, 0))
    want = 10 + tail
    r = b""
    while len(r) < want:
        r += k.recv(want - len(r))
    esize, eflags = struct.unpack(">QH", r[:10])
    assert esize == size and eflags & 1 and r[10:] == bytes(tail), (esize, eflags)
    k.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, 5, 0, 512))  # READ
    rep = b""
    while len(rep) < 16 + 512:
        rep += k.recv(16 + 512 - len(rep))
    assert struct.unpack(">IIQ", rep[:16]) == (0x67446698, 0, 5)
    k.close()
print("ok   NBD_OPT_EXPORT_NAME (with and without zero padding)")
