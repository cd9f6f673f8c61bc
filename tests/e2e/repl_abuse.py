"""Garbage on a secondary's replication port: each case is refused (the
connection closes) and the daemon stays up with bounded memory.
Usage: repl_abuse.py HOST PORT PID DATA_SIZE"""
import os, socket, struct, sys, time
from nbdtest import closed
from replwire import hdr, hello, gens, handshake

HOST, PORT, PID, SIZE = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
failures = []

def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)

def conn():
    s = socket.create_connection((HOST, PORT), timeout=5)
    return s

def rss():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

rss0 = rss()
s = conn(); s.sendall(os.urandom(4096))
check(closed(s), "random bytes -> closed")
s = conn(); s.sendall(hdr(1, 48, magic=0xDEADBEEF) + bytes(48))
check(closed(s), "wrong magic -> closed")
s = conn(); h = bytearray(hello(SIZE)); h[20] ^= 1; s.sendall(bytes(h))
check(closed(s), "header checksum mismatch -> closed")
s = conn(); s.sendall(hdr(1, 48, version=3) + bytes(48))
check(closed(s), "protocol version 3 -> closed")
s = conn(); s.sendall(hdr(2, 0xFFFFFFF0))
check(closed(s), "4 GiB frame length -> closed")
s = conn(); s.sendall(hdr(2, 8 + 4096, seq=1) + struct.pack(">Q", 0) + b"x" * 100); s.close()
print("ok   truncated frame, then gone")
s = conn(); s.sendall(hello(SIZE + (1 << 30)))
check(closed(s), "primary claiming a larger disk -> closed")
s = conn(); s.sendall(hello(SIZE))
check(closed(s, 10), "HELLO, then silence -> closed (handshake timeout)")
s = conn(); s.sendall(hello(SIZE) + gens(current=0x77))
check(closed(s), "unrelated data (no common generation) -> closed")
s = conn(); s.sendall(hdr(2, 8 + 512, seq=1) + struct.pack(">Q", 0) + bytes(512))
check(closed(s), "WRITE before HELLO -> closed")
s = conn(); s.sendall(hello(SIZE) + hdr(2, 8 + 512, seq=1) + struct.pack(">Q", 0) + bytes(512))
check(closed(s), "WRITE after HELLO, before GENS -> closed")
s = conn(); s.sendall(handshake(SIZE) + hdr(2, 8 + 512, seq=1) + struct.pack(">Q", SIZE) + bytes(512))
check(closed(s), "WRITE past the end of the disk -> closed")
s = conn(); s.sendall(handshake(SIZE) + hdr(7, 0, seq=1))
check(closed(s), "an ACK sent to a secondary -> closed")
s = conn(); s.sendall(handshake(SIZE) + hdr(12, 9, flags=1 << 6) + bytes(9))
check(closed(s), "a bitmap nobody asked for -> closed")
for i in range(200):  # many connections opened and dropped
    c = conn()
    if i % 2:
        c.sendall(hdr(1, 48)[:10])
    c.close()
time.sleep(0.5)
os.kill(PID, 0)
check(rss() - rss0 < 100 * 1024, f"RSS bounded ({rss()} KiB, started at {rss0})")
print(f"{len(failures)} failures")
sys.exit(1 if failures else 0)
