# create-md: internal and external metadata, refusal to overwrite without
# --force, and refusal to serve without, or with corrupt or foreign,
# metadata, each with a message that says what is wrong. The superblock is
# kept twice: with one copy overwritten by garbage (internal: copy A, the
# disk's last 4 KiB; external: copy B, the file's second 4 KiB) serve still
# starts and logs a warning; with both copies bad it refuses.
# engine-independent
. "$(dirname "$0")/lib.bash"

expect_fail() { # expect_fail PATTERN CMD...: CMD fails and says PATTERN
    local pat=$1; shift
    if "$@" >"$T/out" 2>&1; then cat "$T/out"; fail "should have failed: $*"; fi
    cat "$T/out"
    grep -qi -- "$pat" "$T/out" || fail "message should mention '$pat'"
}

truncate -s 1G "$T/disk"
"$NBDM" create-md "$T/disk" | tee "$T/out"
exported=$(sed -n 's/.*exported size \([0-9]*\) bytes/\1/p' "$T/out")
meta=$(sed -n 's/.*metadata \([0-9]*\) bytes.*/\1/p' "$T/out")
# the man page's formula: 40 KiB + 31 x one 4 KiB page per 32704 blocks of
# 4 KiB (a 1 GiB disk: 262144 blocks, 9 pages)
[ "$meta" = $((40 * 1024 + 31 * 9 * 4096)) ] || fail "metadata size $meta differs from the documented formula"
[ "$exported" = $(( (1 << 30) - meta )) ] || fail "exported size $exported"

expect_fail "already holds nbdmirror metadata" "$NBDM" create-md "$T/disk"
"$NBDM" create-md "$T/disk" --force >/dev/null

log "serve without metadata"
truncate -s 64M "$T/blank"
expect_fail "run 'nbdmirror create-md" "$NBDM" serve "$T/blank" --nbd "unix:$SOCK" --control "$CTL"

# garbage BLOCK FILE: overwrites 4 KiB block number BLOCK of FILE with random bytes
garbage() { dd if=/dev/urandom of="$2" bs=4096 seek="$1" count=1 conv=notrunc status=none; }
copy_a=$(( (1 << 30) / 4096 - 1 )) copy_b=$(( (1 << 30) / 4096 - 2 ))

log "corrupt superblock (a flipped byte in both copies)"
cp --sparse=always "$T/disk" "$T/corrupt"
for blk in $copy_a $copy_b; do
    printf '\x42' | dd of="$T/corrupt" bs=1 seek=$(( blk * 4096 + 100 )) conv=notrunc status=none
done
expect_fail "checksum" "$NBDM" serve "$T/corrupt" --nbd "unix:$SOCK" --control "$CTL"
expect_fail "already holds nbdmirror metadata (damaged)" "$NBDM" create-md "$T/corrupt"

log "one superblock copy garbage: serve starts, with a warning"
cp --sparse=always "$T/disk" "$T/torn"
garbage $copy_a "$T/torn"
: >"$T/server.log"
start_server "$T/torn"
[ "$(export_size)" = "$exported" ] || fail "served size with one bad superblock copy"
stop_server
cat "$T/server.log"
grep -q "warning: metadata superblock copy A .* is unusable" "$T/server.log" ||
    fail "serve should warn about the bad superblock copy"
# serve rewrote the bad copy from the good one: a second start has no warning
: >"$T/server.log"
start_server "$T/torn"
stop_server
if grep -q "is unusable" "$T/server.log"; then fail "serve did not repair the bad copy"; fi
expect_fail "already holds nbdmirror metadata; use" "$NBDM" create-md "$T/torn"
garbage $copy_a "$T/torn"
expect_fail "already holds nbdmirror metadata (one superblock copy damaged)" "$NBDM" create-md "$T/torn"

log "both superblock copies bad: refused"
# the other copy damaged too: its checksum is the reason given, not the
# garbage's missing magic (which would suggest running create-md)
printf '\x42' | dd of="$T/torn" bs=1 seek=$(( copy_b * 4096 + 100 )) conv=notrunc status=none
expect_fail "superblock checksum mismatch" "$NBDM" serve "$T/torn" --nbd "unix:$SOCK" --control "$CTL"
garbage $copy_b "$T/torn"
expect_fail "no nbdmirror metadata" "$NBDM" serve "$T/torn" --nbd "unix:$SOCK" --control "$CTL"

log "foreign metadata file"
head -c 1M /dev/urandom >"$T/foreign.md"
expect_fail "no nbdmirror metadata" "$NBDM" serve "$T/blank" --meta "$T/foreign.md" --nbd "unix:$SOCK" --control "$CTL"

log "external metadata"
"$NBDM" create-md "$T/blank" --meta "$T/ext.md" | tee "$T/out"
grep -q "exported size $((64 << 20)) bytes" "$T/out" || fail "external metadata must export the whole disk"
start_server "$T/blank" --meta "$T/ext.md"
[ "$(export_size)" = $((64 << 20)) ] || fail "served size"
stop_server
cp "$T/ext.md" "$T/ext-torn.md"
garbage 1 "$T/ext-torn.md" # copy B
: >"$T/server.log"
start_server "$T/blank" --meta "$T/ext-torn.md"
stop_server
grep -q "warning: metadata superblock copy B .* is unusable" "$T/server.log" ||
    { cat "$T/server.log"; fail "serve should warn about the bad external superblock copy"; }
garbage 1 "$T/ext-torn.md" # serve repaired copy B: garbage it again,
garbage 0 "$T/ext-torn.md" # and copy A
expect_fail "no nbdmirror metadata" "$NBDM" serve "$T/blank" --meta "$T/ext-torn.md" --nbd "unix:$SOCK" --control "$CTL"
# forgetting --meta must not lead anyone to run create-md over the data
expect_fail "give --meta" "$NBDM" serve "$T/blank" --nbd "unix:$SOCK" --control "$CTL"

log "external metadata made for another disk"
truncate -s 80M "$T/other"
expect_fail "made for a disk of" "$NBDM" serve "$T/other" --meta "$T/ext.md" --nbd "unix:$SOCK" --control "$CTL"

log "a disk too small"
truncate -s 100K "$T/tiny"
expect_fail "too small" "$NBDM" create-md "$T/tiny"

log "bad command lines"
expect_fail "nbd is required" "$NBDM" serve "$T/disk"
expect_fail "engine takes" "$NBDM" serve "$T/disk" --nbd "unix:$SOCK" --engine foo
grep -q create-md <<<"$("$NBDM" --help)" || fail "--help"
grep -q -- --direct <<<"$("$NBDM" serve --help)" || fail "serve --help"
