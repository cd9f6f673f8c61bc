# The libFuzzer targets (tests/fuzz: the NBD front end, a secondary's
# replication port, the metadata decoders, the metrics endpoint) for 10 s
# each from their seeds alone: every seed passes and the mutations find no
# crash, sanitizer error, leak or hang, and the targets' sockets are gone
# when they exit. `make fuzz` runs them for 5 minutes each.
# engine-independent: the fuzzers pick their own
. "$(dirname "$0")/lib.bash"

for n in nbd repl meta metrics; do
    [ -x "$ROOT/build-fuzz/fuzz_$n" ] || fail "no build-fuzz/fuzz_$n: 'make fuzzers' (make check builds them)"
done
# the targets put their sockets in $TMPDIR; one left in /tmp would mean
# a target that ignores it
before=$( (ls /tmp/nbdm-fuzz*.sock 2>/dev/null || true) | sort)
mkdir "$T/tmp"
if ! TMPDIR=$T/tmp FUZZ_OUT=$T FUZZ_CORPUS=$T/corpus "$ROOT/tests/fuzz/run" 10; then
    mkdir -p "$ROOT/build/test-logs/fuzz-artifacts"
    cp "$T"/artifacts/* "$T"/fuzz_*.log "$ROOT/build/test-logs/fuzz-artifacts/" 2>/dev/null || true
    fail "a fuzzer found something: build/test-logs/fuzz-artifacts/ has the input"
fi
left=$(comm -13 <(echo "$before") <( (ls /tmp/nbdm-fuzz*.sock 2>/dev/null || true) | sort))
[ -z "$left" ] || fail "a fuzz target left its socket in /tmp: $left"
left=$(ls "$T/tmp")
[ -z "$left" ] || fail "a fuzz target did not remove its socket: $left"
echo "fuzz targets: nothing found, no socket left behind"
