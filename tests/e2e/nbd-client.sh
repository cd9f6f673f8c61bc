# The kernel's NBD client: nbd-client attaches the export to /dev/nbd0,
# then mkfs, mount, write, umount, fsck. Needs the nbd module.
# engine-independent
. "$(dirname "$0")/lib.bash"

[ -e /dev/nbd0 ] || modprobe nbd 2>/dev/null || true
[ -b /dev/nbd0 ] || skip "no /dev/nbd0 (this kernel has no nbd module); the kernel path is untested here"
command -v nbd-client >/dev/null || fail "nbd-client not installed"

new_disk "$T/disk" 256M
mkdir -p "$T/mnt"
start_server "$T/disk"
nbd-client -unix "$SOCK" /dev/nbd0 -N "" || fail "nbd-client could not attach"
on_exit 'mountpoint -q "$T/mnt" && umount "$T/mnt"; nbd-client -d /dev/nbd0'
mkfs.ext4 -q -F /dev/nbd0
mount /dev/nbd0 "$T/mnt"
dd if=/dev/urandom of="$T/mnt/f" bs=1M count=20 status=none
sum=$(sha256sum <"$T/mnt/f")
umount "$T/mnt"
e2fsck -fn /dev/nbd0 || fail "fsck"
mount /dev/nbd0 "$T/mnt"
[ "$(sha256sum <"$T/mnt/f")" = "$sum" ] || fail "checksum"
umount "$T/mnt"
nbd-client -d /dev/nbd0
stop_server
