# qemu-io writes patterns and reads them back; then one scripted sequence of
# writes, trims and zero writes goes both to the export and to a plain
# reference file, and qemu-img compare finds them equal. Run buffered and
# with --direct.
. "$(dirname "$0")/lib.bash"

for mode in buffered direct; do
    rm -f "$T/disk"
    new_disk "$T/disk" 96M
    extra=()
    [ $mode = direct ] && extra=(--direct)
    log "$mode"
    start_server "$T/disk" "${extra[@]}"
    size=$(export_size)
    # the reference starts as a copy of the (empty) export
    nbdcopy "$URI" "$T/ref"

    pat=(-c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 1M 64k' -c 'write -P 0x11 3M 512')
    qemu-io -f raw "${pat[@]}" "$URI" >/dev/null
    qemu-io -f raw "${pat[@]}" "$T/ref" >/dev/null
    out=$(qemu-io -f raw -c 'read -P 0x5a 0 1M' -c 'read -P 0xa5 1M 64k' -c 'read -P 0x11 3M 512' \
        -c 'read -P 0 4M 4096' "$URI" 2>&1 || true)
    echo "$out" | grep -q 'Pattern verification failed' && fail "pattern mismatch: $out"

    # one sequence, two targets: the export and the reference file
    cmds=()
    seed=$RANDOM
    "$PY" - "$size" "$seed" >"$T/cmds" <<'PY'
import random, sys
size, rnd = int(sys.argv[1]), random.Random(int(sys.argv[2]))
for i in range(300):
    op = rnd.choice(["write", "write", "write", "zero", "zero-nohole", "discard"])
    length = rnd.choice([512, 4096, 65536, 1 << 20, rnd.randrange(1, 200000)])
    off = rnd.randrange(0, size - length)
    if op == "write":
        print(f"write -P {rnd.randrange(1, 255)} {off} {length}")
    elif op == "zero":
        print(f"write -z -u {off} {length}")
    elif op == "zero-nohole":
        print(f"write -z {off} {length}")
    else:
        print(f"discard {off} {length}")
PY
    while read -r c; do cmds+=(-c "$c"); done <"$T/cmds"
    qemu-io -f raw "${cmds[@]}" "$URI" >"$T/qio.out" 2>&1 || { tail "$T/qio.out"; fail "qemu-io on export"; }
    grep -qi 'error\|failed' "$T/qio.out" && { grep -i 'error\|failed' "$T/qio.out" | head; fail "qemu-io reported errors"; }
    qemu-io -f raw "${cmds[@]}" "$T/ref" >/dev/null
    qemu-img compare -f raw -F raw "$URI" "$T/ref" || fail "export differs from reference (seed $seed)"
    server_alive || fail "server died"
    stop_server
done
