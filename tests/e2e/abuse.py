"""Hostile and broken NBD clients, each on its own raw socket, while a
well-behaved libnbd client keeps reading and writing on another connection.
Every case must get the right error or a dropped connection; the daemon must
stay up with bounded memory. Usage: abuse.py SOCKET SERVER_PID"""
import errno, os, random, socket, struct, sys, time
import nbd
from nbdtest import closed

SOCK, PID = sys.argv[1], int(sys.argv[2])
NBDMAGIC, IHAVEOPT, REPMAGIC = 0x4E42444D41474943, 0x49484156454F5054, 0x3E889045565A9
REQ, SIMPLE, STRUCT = 0x25609513, 0x67446698, 0x668E33EF
OPT_EXPORT_NAME, OPT_ABORT, OPT_GO, OPT_STRUCTURED = 1, 2, 7, 8
REP_ACK, REP_INFO, ERR_UNSUP, ERR_INVALID, ERR_UNKNOWN = 1, 3, 0x80000001, 0x80000003, 0x80000006
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM = 0, 1, 2, 3, 4
EPERM, EINVAL, ENOSPC = 1, 22, 28
failures = []

def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)

def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(SOCK)
    return s

def recvn(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError(f"closed after {len(b)} of {n} bytes")
        b += c
    return b

def greet(s, flags=3):
    magic, opt, hflags = struct.unpack(">QQH", recvn(s, 18))
    assert magic == NBDMAGIC and opt == IHAVEOPT, "bad greeting"
    s.sendall(struct.pack(">I", flags))

def opt(s, o, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, o, len(data)) + data)

def opt_reply(s):
    magic, o, typ, ln = struct.unpack(">QIII", recvn(s, 20))
    assert magic == REPMAGIC, hex(magic)
    return o, typ, recvn(s, ln)

def go(s):
    """NBD_OPT_GO on the default export, simple replies; returns size."""
    opt(s, OPT_GO, struct.pack(">IH", 0, 0))
    size = None
    while True:
        o, typ, data = opt_reply(s)
        if typ == REP_INFO and struct.unpack(">H", data[:2])[0] == 0:
            size = struct.unpack(">Q", data[2:10])[0]
        if typ == REP_ACK:
            return size
        assert typ == REP_INFO, hex(typ)

def request(s, typ, off, ln, payload=b"", flags=0, cookie=1):
    s.sendall(struct.pack(">IHHQQI", REQ, flags, typ, cookie, off, ln) + payload)

def simple_reply(s):
    magic, err, cookie = struct.unpack(">IIQ", recvn(s, 16))
    assert magic == SIMPLE, hex(magic)
    return err, cookie

def rss_kib():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

# the witness: a normal client that must keep working throughout
good = nbd.NBD()
good.connect_unix(SOCK)
good_off = [0]
def witness():
    data = os.urandom(4096)
    good.pwrite(data, good_off[0])
    ok = good.pread(4096, good_off[0]) == data
    good_off[0] = (good_off[0] + 4096) % (8 << 20)
    check(ok and os.kill(PID, 0) is None, "  witness read/write still works")

rss0 = rss_kib()

print("garbage instead of a handshake")
s = conn(); recvn(s, 18); s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(4000))
check(closed(s), "garbage handshake -> dropped"); witness()

print("wrong option magic")
s = conn(); greet(s); s.sendall(os.urandom(64))
check(closed(s), "bad option magic -> dropped"); witness()

print("absurd option length")
s = conn(); greet(s); s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, 0xFFFFFFF0))
check(closed(s), "option length 4 GiB -> dropped"); witness()

print("unknown option, then a normal GO")
s = conn(); greet(s); opt(s, 4242, b"xyz")
o, typ, _ = opt_reply(s)
check(o == 4242 and typ == ERR_UNSUP, "unknown option -> NBD_REP_ERR_UNSUP")
opt(s, OPT_GO, struct.pack(">I", 5) + b"nope!" + struct.pack(">H", 0))
_, typ, _ = opt_reply(s)
check(typ == ERR_UNKNOWN, "GO for an unknown export -> NBD_REP_ERR_UNKNOWN")
opt(s, OPT_GO, struct.pack(">I", 100) + b"x")  # name length beyond the option
_, typ, _ = opt_reply(s)
check(typ == ERR_INVALID, "malformed GO -> NBD_REP_ERR_INVALID")
size = go(s)
check(size is not None and size > 0, f"GO after errors works (size {size})")

print("2000 options pipelined, replies read afterwards")
p = conn(); greet(p)
p.sendall(struct.pack(">QII", IHAVEOPT, 3, 0) * 2000)  # NBD_OPT_LIST: 2 replies each
try:
    acks = 0
    while acks < 2000:
        _, typ, _ = opt_reply(p)
        acks += typ == REP_ACK
    check(go(p) is not None, "all 2000 answered (more than the reply buffer), then GO")
except (EOFError, socket.timeout) as e:
    check(False, f"pipelined options stalled: {e}")
p.close()

print("requests on that connection")
request(s, 42, 0, 512, cookie=7)
err, c = simple_reply(s)
check(err == EINVAL and c == 7, "unknown command -> EINVAL")
request(s, CMD_READ, 0, 0x7FFFFFFF, cookie=8)
err, c = simple_reply(s)
check(err == EINVAL and c == 8, "read of 2 GiB -> EINVAL")
request(s, CMD_READ, size - 100, 4096, cookie=9)
err, _ = simple_reply(s)
check(err == EINVAL, "read past the end -> EINVAL")
request(s, CMD_READ, 2**64 - 512, 1024, cookie=10)
err, _ = simple_reply(s)
check(err == EINVAL, "read at offset 2^64-512 (wraps) -> EINVAL")
request(s, CMD_WRITE, size - 100, 4096, os.urandom(4096), cookie=11)
err, _ = simple_reply(s)
check(err == ENOSPC, "write past the end -> ENOSPC (payload consumed)")
request(s, CMD_TRIM, size, 4096, cookie=12)
err, _ = simple_reply(s)
check(err == EINVAL, "trim past the end -> EINVAL")
request(s, CMD_WRITE, 0, 512, b"\x01" * 512, flags=0x8000, cookie=13)
err, _ = simple_reply(s)
check(err == EINVAL, "unknown command flag -> EINVAL")
request(s, CMD_WRITE, 4096, 512, b"\x5a" * 512, cookie=14)
err, _ = simple_reply(s)
request(s, CMD_READ, 4096, 512, cookie=15)
err2, _ = simple_reply(s)
data = recvn(s, 512)
check(err == 0 and err2 == 0 and data == b"\x5a" * 512, "the connection still works after all that")
request(s, CMD_DISC, 0, 0)
check(closed(s), "NBD_CMD_DISC -> closed"); witness()

print("write longer than the maximum block size")
s = conn(); greet(s); go(s)
request(s, CMD_WRITE, 0, 0xFFFFFFFF, b"\0" * 1000)
check(closed(s), "4 GiB write -> dropped"); witness()

print("bad request magic")
s = conn(); greet(s); go(s)
s.sendall(os.urandom(28))
check(closed(s), "random request -> dropped"); witness()

print("disconnect in the middle of a write payload")
for cut in (10, 28 + 100, 28 + 60000):
    s = conn(); greet(s); go(s)
    msg = struct.pack(">IHHQQI", REQ, 0, CMD_WRITE, 1, 0, 65536) + os.urandom(65536)
    s.sendall(msg[:cut]); s.close()
witness()

print("unknown client flags")
s = conn(); greet(s, flags=0xFFFF)
check(closed(s), "unknown client flags -> dropped")

print("NBD_OPT_ABORT")
s = conn(); greet(s); opt(s, OPT_ABORT)
_, typ, _ = opt_reply(s)
check(typ == REP_ACK and closed(s), "abort -> ack and close")

print("many requests without reading replies (backpressure)")
s = conn(); greet(s); go(s)
s.setblocking(False)
sent = 0
blob = b"".join(struct.pack(">IHHQQI", REQ, 0, CMD_READ, i, 0, 65536) for i in range(20000))
t0 = time.time()
while time.time() - t0 < 3:
    try:
        sent += s.send(blob[sent:])
    except BlockingIOError:
        time.sleep(0.05)
    if sent >= len(blob):
        break
check(rss_kib() - rss0 < 200 * 1024, f"RSS bounded while a client does not read ({rss_kib()} KiB)")
witness()
s.close()

print("hundreds of connections opened and dropped")
socks = []
for i in range(400):
    s = conn()
    stage = i % 4
    if stage >= 1: recvn(s, 18)
    if stage >= 2: s.sendall(struct.pack(">I", 3))
    if stage >= 3: s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, 100) + b"x" * 10)
    socks.append(s)
    if len(socks) >= 100:
        for x in socks: x.close()
        socks = []
for x in socks: x.close()
time.sleep(0.5)
witness()
check(rss_kib() - rss0 < 200 * 1024, f"RSS bounded after 400 connections ({rss_kib()} KiB, started at {rss0})")

good.shutdown()
print(f"{len(failures)} failures")
sys.exit(1 if failures else 0)
