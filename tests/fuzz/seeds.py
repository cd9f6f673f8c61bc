#!/usr/bin/python3
"""Writes the fuzzers' seed corpus into tests/fuzz/seeds/{nbd,repl,meta,metrics}/:
valid conversations and structures, which the fuzzers mutate. Run from the
repository root after `make` (the metadata seeds come from create-md).
The files are committed; rerun this when a format changes. Inputs that
once crashed a fuzzer are kept beside them as crash-* (not made here)."""
import os, struct, subprocess, sys, tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e"))
from replwire import crc32c, hdr, hello, gens, write, BARRIER, TRIM, ZERO, SKIP_SYNC

OUT = os.path.join(os.path.dirname(__file__), "seeds")

def save(kind, name, data):
    os.makedirs(os.path.join(OUT, kind), exist_ok=True)
    with open(os.path.join(OUT, kind, name), "wb") as f:
        f.write(data)

# ---- NBD: what a client sends ----
IHAVEOPT, REQ_MAGIC = 0x49484156454F5054, 0x25609513

def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data

def go(name=b"", infos=()):
    return struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos)) + \
        b"".join(struct.pack(">H", i) for i in infos)

def meta_ctx(*queries):
    q = b"".join(struct.pack(">I", len(x)) + x for x in queries)
    return struct.pack(">I", 0) + struct.pack(">I", len(queries)) + q

def req(typ, off=0, length=0, flags=0, cookie=1, data=b""):
    return struct.pack(">IHHQQI", REQ_MAGIC, flags, typ, cookie, off, length) + data

FLAGS = struct.pack(">I", 3)  # FIXED_NEWSTYLE | NO_ZEROES
io = (req(1, 0, 4096, cookie=1, data=b"\xab" * 4096) + req(0, 0, 4096, cookie=2) +
      req(3, cookie=3) + req(4, 8192, 4096, cookie=4) + req(6, 16384, 65536, cookie=5) +
      req(6, 0, 4096, flags=1 << 1, cookie=6) + req(7, 0, 1 << 20, cookie=7) +
      req(5, 0, 4096, cookie=8) + req(1, 4095, 2, flags=1, cookie=9, data=b"zz") + req(2))
save("nbd", "structured-go", FLAGS + opt(8) + opt(10, meta_ctx(b"base:allocation")) +
     opt(7, go(b"", (0, 1, 2, 3))) + io)
save("nbd", "simple-go", FLAGS + opt(7, go()) + io)
save("nbd", "export-name", FLAGS + opt(1) + io)
save("nbd", "list-info-abort", FLAGS + opt(3) + opt(6, go(b"", (3,))) +
     opt(9, meta_ctx(b"base:", b"qemu:dirty-bitmap:x")) + opt(5) + opt(2))
save("nbd", "bad-requests", FLAGS + opt(8) + opt(7, go()) + req(0, 1 << 40, 4096) +
     req(1, 0, 0) + req(9) + struct.pack(">I", 0xDEADBEEF) + bytes(24))

# ---- replication: what a primary sends to a secondary (the fuzzer fixes
# the header CRCs when the first byte is odd, and puts the node's size in a
# HELLO of size 0, its id in a GENS with the skip-sync id) ----
def barrier(seq, epoch, flags=0, payload=b""):
    return hdr(BARRIER, len(payload), seq=seq, epoch=epoch, flags=flags) + payload

def frame(typ, payload=b"", seq=0, flags=0, aux=0, epoch=0):
    return hdr(typ, len(payload), seq=seq, flags=flags, aux=aux, epoch=epoch) + payload

PING, STATE, CSUM_REQ, BITMAP = 9, 13, 14, 12
start = hello(0) + gens(SKIP_SYNC)
save("repl", "stream", b"\x01" + start + write(1, 0, b"\x11" * 4096) +
     write(2, 4096, b"\x22" * 8192, ) + frame(TRIM, struct.pack(">QI", 65536, 8192), seq=3) +
     frame(ZERO, struct.pack(">QI", 131072, 4096), seq=4, flags=2) + barrier(5, 1) +
     write(6, 512, b"\x33" * 512) + barrier(7, 2, flags=1 << 8) + frame(PING, seq=8) +
     frame(STATE, struct.pack(">Q", 0x1234567), aux=2) + barrier(9, 3, flags=1 << 5))
save("repl", "resync", b"\x01" + start + barrier(1, 1, 1 << 3, struct.pack(">QQ", SKIP_SYNC, 8192)) +
     hdr(2, 8 + 4096, seq=2, flags=1 << 2) + struct.pack(">Q", 0) + b"\x44" * 4096 +
     hdr(2, 8 + 4096, seq=3, flags=1 << 2) + struct.pack(">Q", 4096) + b"\x55" * 4096 +
     barrier(4, 2, 1 << 4, struct.pack(">Q", 0x777)))
save("repl", "csum", b"\x01" + start + frame(CSUM_REQ, struct.pack(">QI", 0, 65536), seq=1) +
     frame(CSUM_REQ, struct.pack(">QI", 4096, 8192), seq=2, flags=1 << 7))
save("repl", "secondary-peer", b"\x01" + hello(0, role=0) + gens(SKIP_SYNC, primary=False) +
     frame(BITMAP, struct.pack(">Q", 0) + b"\xff" * 8, flags=1 << 6) + frame(PING))
save("repl", "newer-peer", b"\x01" + hello(0) +
     gens(0x99, bitmap=SKIP_SYNC, history=(SKIP_SYNC, 0, 0, 0), bits=16) +
     barrier(1, 1, 1 << 3, struct.pack(">QQ", SKIP_SYNC, 65536)) +
     hdr(2, 8 + 4096, seq=2, flags=1 << 2) + struct.pack(">Q", 0) + b"\x66" * 4096 +
     barrier(3, 2, 1 << 4, struct.pack(">Q", 0x99)))
save("repl", "garbage", b"\x00" + b"NMRP" + bytes(range(60)))

# ---- metadata: byte 0 = kind << 1 | fix-checksums ----
nbdm = os.path.join(os.path.dirname(__file__), "..", "..", "build", "nbdmirror")
with tempfile.TemporaryDirectory() as d:
    disk = os.path.join(d, "disk")
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run([nbdm, "create-md", disk, "--skip-initial-sync"], check=True,
                   stdout=subprocess.DEVNULL)
    with open(disk, "rb") as f:
        f.seek((64 << 20) - 4096)
        save("meta", "superblock-internal", b"\x00" + f.read(4096))
    ext = os.path.join(d, "meta")
    subprocess.run([nbdm, "create-md", disk, "--meta", ext], check=True, stdout=subprocess.DEVNULL)
    with open(ext, "rb") as f:
        save("meta", "superblock-external", b"\x00" + f.read(4096))
page = bytearray(4096)
page[0:16] = b"\xff" * 16
save("meta", "bitmap-page", b"\x03" + bytes([0, 0]) + bytes(page))
save("meta", "bitmap-page-zero", b"\x02" + bytes([1, 3]) + bytes(4096))

def al_half(seq, exts, cap=1016):
    n = len(exts)
    size = (32 + 4 * n + 4095) // 4096 * 4096
    b = bytearray(size)
    struct.pack_into("<IIQII", b, 0, 0x4C414D4E, 0, seq, n, cap)
    for i, e in enumerate(exts):
        struct.pack_into("<I", b, 32 + 4 * i, e)
    struct.pack_into("<I", b, 4, crc32c(bytes(b[8:])))
    return bytes(b)

HALF = 16 << 10
a = al_half(7, [1, 5, 9, 200]).ljust(HALF, b"\0") + al_half(8, [1, 2, 3]).ljust(HALF, b"\0")
save("meta", "activity-log", b"\x04\x40" + a)
save("meta", "activity-log-fixed", b"\x05\x40" + a)
# ---- metrics: what an HTTP client sends ----
save("metrics", "get", b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n")
save("metrics", "head-query", b"HEAD /metrics?x=1 HTTP/1.0\n\n")
save("metrics", "post-body", b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
save("metrics", "not-found", b"GET /other HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n")
save("metrics", "garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(40)))
save("metrics", "long-header", b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")

print("seeds written to", OUT)
