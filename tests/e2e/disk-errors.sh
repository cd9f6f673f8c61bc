# A failing disk and a full disk: the client gets EIO / ENOSPC, the daemon
# logs it and keeps serving, and data acknowledged before reads back intact.
. "$(dirname "$0")/lib.bash"

command -v nbdkit >/dev/null || fail "nbdkit not installed (make check installs it)"
[ -e /dev/fuse ] || skip "no /dev/fuse"
mkdir -p "$T/fz" "$T/small"

log "failing disk: DISK is a file whose writes fail while $T/trigger exists"
# nbdkit's error filter makes the failures; nbdfuse turns that export into
# a plain file in a FUSE mount, which is what nbdmirror serves
nbdkit -f -U "$T/under.sock" --filter=error memory 64M \
    error-pwrite=EIO error-pwrite-rate=100% error-pwrite-file="$T/trigger" &
kit=$!
on_exit "kill $kit 2>/dev/null"
for _ in $(seq 100); do [ -S "$T/under.sock" ] && break; sleep 0.05; done
nbdfuse "$T/fz/disk" "nbd+unix:///?socket=$T/under.sock" &
for _ in $(seq 100); do [ -e "$T/fz/disk" ] && break; sleep 0.05; done
on_exit 'mountpoint -q "$T/fz" && fusermount3 -u "$T/fz"'
"$NBDM" create-md "$T/fz/disk" >/dev/null
start_server "$T/fz/disk"
"$PY" - "$URI" "$T/trigger" <<'PY'
import errno, nbd, os, sys
uri, trigger = sys.argv[1], sys.argv[2]
h = nbd.NBD(); h.connect_uri(uri)
good = os.urandom(65536)
h.pwrite(good, 0); h.flush()
open(trigger, "w").close()
for flags in (0, nbd.CMD_FLAG_FUA):
    try:
        h.pwrite(os.urandom(4096), 1 << 20, flags)
        raise SystemExit("write on a failing disk succeeded")
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
        print("write failed with EIO, flags", flags)
assert h.pread(65536, 0) == good, "earlier data must survive"
os.unlink(trigger)
h.pwrite(b"\x42" * 4096, 1 << 20)
assert h.pread(4096, 1 << 20) == b"\x42" * 4096
h.shutdown()
print("disk healed, writes work again")
PY
grep -q 'failed: Input/output error' "$T/server.log" || fail "the I/O error must be logged"
server_alive || fail "server died"
stop_server

log "full disk: a sparse DISK on a 24 MiB filesystem"
truncate -s 24M "$T/fs.img"
mkfs.ext4 -q -F "$T/fs.img"
mount -o loop "$T/fs.img" "$T/small"
on_exit 'mountpoint -q "$T/small" && umount "$T/small"'
new_disk "$T/small/disk" 64M
start_server "$T/small/disk"
"$PY" - "$URI" "$(dirname "$0")" <<'PY'
import nbd, os, sys
sys.path.insert(0, sys.argv[2])
from nbdtest import fill_until_enospc
h = nbd.NBD(); h.connect_uri(sys.argv[1])
first = os.urandom(1 << 20)
h.pwrite(first, 0)
off = fill_until_enospc(h, 1 << 20)
assert h.pread(1 << 20, 0) == first, "earlier data must survive a full disk"
h.trim(off - (4 << 20), 4 << 20)  # frees blocks of the sparse file
h.pwrite(b"\x33" * 65536, off - (4 << 20))
assert h.pread(65536, off - (4 << 20)) == b"\x33" * 65536
h.shutdown()
print("space freed by trim, writes work again")
PY
server_alive || fail "server died"
stop_server
