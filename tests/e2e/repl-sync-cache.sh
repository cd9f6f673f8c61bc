# A full sync streams the whole disk through both nodes. On buffered files it
# must not leave it in their page caches (resync reads and writes use
# RWF_DONTCACHE): a sync that fills them evicts what the machine had cached,
# and on ext4 leaves the image in large folios, into which every later
# 4 KiB write costs 2.4x the CPU (bench/README.md). Where a filesystem
# refuses the flag (tmpfs), the io engine retries without it and the sync
# still completes, byte for byte.
. "$(dirname "$0")/lib.bash"

make_hosts 1
new_disk "$T/p.img" 160M
head -c 150M /dev/urandom | dd of="$T/p.img" conv=notrunc status=none
new_disk "$T/s1.img" 160M

resident() { fincore -b -n -o RES "$1"; }

# does this kernel (6.14 and later) take RWF_DONTCACHE on $T's filesystem?
if "$PY" - "$T/probe" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
try:
    os.pwritev(fd, [bytes(4096)], 0, 0x80)  # RWF_DONTCACHE
except OSError:
    sys.exit(1)
PY
then
    log "full sync between files on $(stat -f -c %T "$T"): the page caches stay empty"
    drop_cache "$T/p.img"
    drop_cache "$T/s1.img"
    start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --force
    start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789
    wait_synced p
    # the written data leave the cache when their writeback ends: give it time
    limit=$((16 << 20)) # of 160 MiB; without the flag both hold all of it
    for _ in $(seq 100); do
        [ "$(resident "$T/p.img")" -le $limit ] && [ "$(resident "$T/s1.img")" -le $limit ] && break
        sleep 0.1
    done
    echo "cached after the sync: primary $(resident "$T/p.img"), secondary $(resident "$T/s1.img") bytes"
    [ "$(resident "$T/p.img")" -le $limit ] || fail "the sync's reads stayed in the primary's page cache"
    [ "$(resident "$T/s1.img")" -le $limit ] || fail "the sync's writes stayed in the secondary's page cache"
    stop_node p
    stop_node s1
    data_equal "$T/p.img" "$T/s1.img" || fail "data areas differ after the full sync"
    echo "synced: equal"
else
    echo "RWF_DONTCACHE not taken on $(stat -f -c %T "$T") (kernel before 6.14?): page cache part skipped"
fi

log "the secondary's disk on tmpfs, which refuses RWF_DONTCACHE: the sync still completes"
SHM=$(mktemp -d /dev/shm/nbdm-test.XXXXXX)
on_exit "rm -rf $SHM"
new_disk "$SHM/s1.img" 160M
start_node p p "$T/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --force
start_node s1 s1 "$SHM/s1.img" --role secondary --listen 10.77.1.2:7789
wait_synced p
qemu-io -f raw -c 'write -P 0x5a 1M 1M' "$URI" >/dev/null
stop_node p
stop_node s1
data_equal "$T/p.img" "$SHM/s1.img" || fail "data areas differ after the sync to tmpfs"
echo "synced to tmpfs: equal"
