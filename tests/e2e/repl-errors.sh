# The primary's own disk fails a write after it was streamed (here: ENOSPC,
# a sparse disk on a full filesystem): the client gets the error, and the
# secondary, which did store it, is synced from the primary again, so both
# end up holding what the client was told.
. "$(dirname "$0")/lib.bash"

make_hosts 1
mkdir -p "$T/small"
truncate -s 24M "$T/fs.img"
mkfs.ext4 -q -F "$T/fs.img"
mount -o loop "$T/fs.img" "$T/small"
on_exit 'mountpoint -q "$T/small" && umount "$T/small"'
new_disk "$T/s1.img" 64M --skip-initial-sync
new_disk "$T/small/p.img" 64M --skip-initial-sync
start_node s1 s1 "$T/s1.img" --role secondary --listen 10.77.1.2:7789
start_node p p "$T/small/p.img" --role primary --nbd "unix:$SOCK" --peer 10.77.1.2:7789 --protocol C
wait_peers p 1
"$PY" - "$URI" "$(dirname "$0")" <<'PY'
import nbd, sys
sys.path.insert(0, sys.argv[2])
from nbdtest import fill_until_enospc
h = nbd.NBD(); h.connect_uri(sys.argv[1])
fill_until_enospc(h, 0)
h.shutdown()
PY
grep -q "failed here after it was sent; syncing the peer again" "$T/p.log" || { cat "$T/p.log"; fail "no resync after the local failure"; }
for _ in $(seq 200); do
    status_has p '"peer_disk":"UpToDate","protocol"' && status_has p '"replication":"Established"' && break
    sleep 0.1
done
"$NBDM" status --control "$T/p.ctl"
stop_node p
stop_node s1
data_equal "$T/small/p.img" "$T/s1.img" || fail "the secondary keeps what the primary's disk refused"
echo "after ENOSPC on the primary: equal"
