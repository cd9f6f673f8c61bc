"""Small helpers shared by the Python test clients in this folder."""
import errno, os, socket
import nbd

MIB = 1 << 20

def closed(s, timeout=5):
    """True if the peer closes the connection (EOF or reset) in time."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False

def fill_until_enospc(h, start):
    """Writes 1 MiB blocks of random data from `start` until the server says
    ENOSPC; returns that offset. Fails if it never does."""
    off = start
    while off < h.get_size() - MIB:
        try:
            h.pwrite(os.urandom(MIB), off)
        except nbd.Error as e:
            assert e.errnum == errno.ENOSPC, e
            print(f"ENOSPC after {off >> 20} MiB")
            return off
        off += MIB
    raise AssertionError("the disk never filled up")
