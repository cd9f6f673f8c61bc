# The hostile-client and protocol suites against a server under valgrind:
# no invalid access, no uninitialised data sent, nothing definitely leaked.
# libaio engine only: valgrind does not see io_uring write into buffers and
# would report every read reply as uninitialised.
# engine-independent
. "$(dirname "$0")/lib.bash"

command -v valgrind >/dev/null || fail "valgrind not installed (make check installs it)"
# a sanitizer build checks the same itself, and valgrind cannot run it
if ldd "$NBDM" | grep -q libasan; then skip "$NBDM is an AddressSanitizer build"; fi
new_disk "$T/disk" 128M
rm -f "$SOCK"
valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
    "$NBDM" serve "$T/disk" --engine aio --nbd "unix:$SOCK" --control "$CTL" 2>"$T/vg.log" &
SERVER_PID=$!
for _ in $(seq 300); do [ -S "$SOCK" ] && break; sleep 0.1; done
"$PY" "$(dirname "$0")/protocol.py" "$SOCK" || fail "protocol under valgrind"
"$PY" "$(dirname "$0")/abuse.py" "$SOCK" "$SERVER_PID" || fail "abuse under valgrind"
kill -TERM "$SERVER_PID"
rc=0
wait "$SERVER_PID" || rc=$?
SERVER_PID=
grep -E 'ERROR SUMMARY|definitely lost' "$T/vg.log"
[ $rc -eq 0 ] || { grep -A20 -E 'Invalid|uninitialised|definitely' "$T/vg.log" | head -60; fail "valgrind exit $rc"; }
