"""Helpers for repl-tls.sh.
  repl_tls.py relay LHOST LPORT THOST TPORT CAPTURE
      forwards each connection made to LHOST:LPORT to THOST:TPORT and
      appends every byte that passes, both ways, to CAPTURE (until killed)
  repl_tls.py forge HOST PORT SIZE GEN
      speaks the replication protocol in plaintext, as a primary whose
      current generation id is GEN (hex: the secondary's own) would, and
      sends a write of 0x5a bytes at offset 0; exits 1 if the other end
      answers in the replication protocol (it took us for a primary), 0 if
      it closes the connection without doing so"""
import socket, struct, sys, threading
from replwire import MAGIC, gens, hello, write

def relay(lhost, lport, thost, tport, capture):
    lock = threading.Lock()
    out = open(capture, "ab", buffering=0)

    def pump(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                with lock:
                    out.write(data)
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    ls = socket.create_server((lhost, int(lport)))
    while True:
        c, _ = ls.accept()
        try:
            t = socket.create_connection((thost, int(tport)), timeout=5)
        except OSError:
            c.close()
            continue
        t.settimeout(None)
        threading.Thread(target=pump, args=(c, t), daemon=True).start()
        threading.Thread(target=pump, args=(t, c), daemon=True).start()

def forge(host, port, size, gen):
    s = socket.create_connection((host, int(port)), timeout=5)
    try:
        s.sendall(hello(int(size)) + gens(int(gen, 16)) + write(1, 0, b"\x5a" * 65536))
    except OSError:
        pass  # refused while we were still sending: what we want
    got = b""
    s.settimeout(10)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
            got += data
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        pass
    if got[:4] == struct.pack(">I", MAGIC):
        print("the plaintext primary was answered in the replication protocol")
        return 1
    print(f"plaintext primary refused ({len(got)} bytes came back, none of our protocol)")
    return 0

if __name__ == "__main__":
    if sys.argv[1] == "relay":
        relay(*sys.argv[2:7])
    else:
        sys.exit(forge(*sys.argv[2:6]))
