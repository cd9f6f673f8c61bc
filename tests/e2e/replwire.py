"""The replication protocol's frames, as the test clients in this folder
forge them (src/repl/wire.c is the reference: a 32-byte header whose last
4 bytes are a CRC32C of the first 28)."""
import struct

MAGIC, VERSION = 0x4E4D5250, 2
HELLO, WRITE, TRIM, ZERO, BARRIER, GENS = 1, 2, 3, 4, 5, 11
SKIP_SYNC = 0x4E4D534B49505331  # the id of disks made with --skip-initial-sync

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF

def hdr(typ, length=0, seq=0, epoch=0, aux=0, flags=0, version=VERSION, magic=MAGIC):
    h = struct.pack(">IBBHIIQI", magic, version, typ, flags, length, epoch, seq, aux)
    return h + struct.pack(">I", crc32c(h))

def hello(size, role=1, proto=ord("C"), node=1234):
    p = struct.pack(">QQQIBBB", size, node, 0, 4096, role, proto, 3)
    return hdr(HELLO, 48) + p + bytes(48 - len(p))

def gens(current=SKIP_SYNC, node=1234, primary=True, bitmap=0, history=(0, 0, 0, 0), bits=0):
    # current, bitmap, history[4], bits, primary_since, node_id, flags, disk, policy
    p = struct.pack(">QQ4QQQQIBB", current, bitmap, *history, bits, 0, node,
                    1 if primary else 0, 3, 0)
    return hdr(GENS, 96) + p + bytes(96 - len(p))

def handshake(size):
    """A valid primary's handshake (equal ids: nothing to sync)."""
    return hello(size) + gens()

def write(seq, off, data):
    return hdr(WRITE, 8 + len(data), seq=seq) + struct.pack(">Q", off) + data
