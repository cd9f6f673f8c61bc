"""Connections that never finish the replication handshake.
Usage: repl_idle.py HOST PORT N MODE READY DEADLINE
Opens N TCP connections to HOST:PORT and, per MODE, sends nothing ("idle"),
the first 10 bytes of a valid HELLO header ("header"), or a whole HELLO
header and part of its payload ("payload"); then stalls. Once the daemon has
taken up every connection (its HELLO arrived, or it closed the connection),
creates the file READY. MODE "silent" sends nothing and creates READY once
connected: with --peer-psk or --peer-certificates the daemon says nothing
before the dialler's TLS hello. Exits 0 if every connection is closed by the other
end within DEADLINE seconds of that, 1 if not."""
import os, select, socket, sys, time
from replwire import HELLO, hdr

HOST, PORT, N, MODE, READY, DEADLINE = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                        sys.argv[4], sys.argv[5], float(sys.argv[6]))

def hello_hdr():
    return hdr(HELLO, 48)

def connect():
    end = time.monotonic() + 15
    while True:
        try:
            return socket.create_connection((HOST, PORT), timeout=5)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)

socks = []
for _ in range(N):
    s = connect()
    if MODE == "header":
        s.sendall(hello_hdr()[:10])
    elif MODE == "payload":
        s.sendall(hello_hdr() + bytes(20))
    s.setblocking(False)
    socks.append(s)

heard, closed = set(), {}
start = time.monotonic()

def poll(timeout):
    """Reads what arrived; records which connections spoke or closed."""
    live = [s for s in socks if s not in closed]
    if not live:
        return
    r, _, _ = select.select(live, [], [], timeout)
    for s in r:
        try:
            data = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        except BlockingIOError:
            continue
        if data:
            heard.add(s)
        else:
            closed[s] = time.monotonic()

if MODE == "silent":
    heard.update(socks)
while any(s not in heard and s not in closed for s in socks):
    if time.monotonic() - start > 15:
        sys.exit(f"the daemon did not take up all {N} connections")
    poll(0.2)
print(f"{N} connections taken up: {len(closed)} closed at once", flush=True)
open(READY, "w").close()
ready = time.monotonic()
while len(closed) < N and time.monotonic() - ready < DEADLINE:
    poll(0.2)
last = f"; the last {max(closed.values()) - ready:.1f} s after READY" if closed else ""
print(f"{len(closed)} of {N} closed by the other end{last}", flush=True)
sys.exit(0 if len(closed) == N else 1)
