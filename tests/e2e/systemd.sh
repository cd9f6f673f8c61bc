# engine-independent
# `make install` puts everything where the filesystem hierarchy says; the
# unit passes `systemd-analyze verify` (silently) and its hardening scores
# OK; its ExecStart line, run as systemd would (NOTIFY_SOCKET, the instance
# name for %i), says READY=1 only once the node serves, replicates, reloads
# with ExecReload, says STOPPING=1 on SIGTERM and exits 0, and makes no
# system call its SystemCallFilter forbids. A broken resource file never
# says READY=1.
. "$(dirname "$0")/lib.bash"

command -v systemd-analyze >/dev/null || skip "no systemd-analyze (package systemd)"

log "make install, PREFIX=/usr and the default /usr/local"
make -s -C "$ROOT" install BUILD="$(basename "$BUILD_DIR")" DESTDIR="$T/root" PREFIX=/usr >"$T/install.log" 2>&1 ||
    { cat "$T/install.log"; fail "make install PREFIX=/usr"; }
make -s -C "$ROOT" install BUILD="$(basename "$BUILD_DIR")" DESTDIR="$T/local" >"$T/install.log" 2>&1 ||
    { cat "$T/install.log"; fail "make install"; }
for f in root/usr/sbin/nbdmirror root/usr/share/man/man8/nbdmirror.8 \
    root/usr/share/man/man5/nbdmirror.conf.5 root/lib/systemd/system/nbdmirror@.service \
    root/usr/lib/ocf/resource.d/nbdmirror/nbdmirror root/etc/nbdmirror/r0.res.example \
    local/usr/local/sbin/nbdmirror local/usr/local/share/man/man8/nbdmirror.8 \
    local/usr/local/lib/systemd/system/nbdmirror@.service \
    local/usr/lib/ocf/resource.d/nbdmirror/nbdmirror; do
    [ -f "$T/$f" ] || fail "make install did not install $f"
done
[ -x "$T/root/usr/sbin/nbdmirror" ] && [ -x "$T/root/usr/lib/ocf/resource.d/nbdmirror/nbdmirror" ] ||
    fail "the program or the agent is not executable"
UNIT=$T/root/lib/systemd/system/nbdmirror@.service
grep -q '^ExecStart=/usr/sbin/nbdmirror up %i --foreground$' "$UNIT" || fail "ExecStart (PREFIX=/usr): $(grep ExecStart "$UNIT")"
grep -q '^ExecStart=/usr/local/sbin/nbdmirror up %i' "$T/local/usr/local/lib/systemd/system/nbdmirror@.service" ||
    fail "ExecStart does not follow PREFIX"
grep -q '@SBINDIR@' "$UNIT" && fail "@SBINDIR@ left in the installed unit"
"$NBDM" dump --config "$T/root/etc/nbdmirror/r0.res.example" --node alpha >/dev/null ||
    fail "the installed example resource does not parse"

log "systemd-analyze verify and security"
# the instance as systemd would load it, its binary where it was installed
mkdir -p "$T/units"
sed "s|/usr/sbin/nbdmirror|$T/root/usr/sbin/nbdmirror|g" "$UNIT" >"$T/units/nbdmirror@r0.service"
out=$(MANPATH=$T/root/usr/share/man systemd-analyze verify "$T/units/nbdmirror@r0.service" 2>&1) ||
    fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify has something to say: $out"
out=$(MANPATH=$T/root/usr/share/man systemd-analyze security --offline=true "$T/units/nbdmirror@r0.service" 2>&1) ||
    fail "systemd-analyze security: $out"
score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) .*/\1/p' <<<"$out")
[ -n "$score" ] || fail "no exposure level: $out"
echo "exposure level: $score"
"$PY" -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= 4.0 else 1)' "$score" ||
    fail "the unit's exposure level is $score (more than 4.0: hardening lost)"

log "ExecStart as systemd runs it: alpha (namespace p) with beta (s1) as its peer"
make_hosts 1
export NBDMIRROR_CONFDIR=$T/conf
mkdir -p "$T/conf"
truncate -s 64M "$T/alpha.img" "$T/beta.img"
{
    printf '[resource]\nprotocol = C\nmeta = internal\n'
    printf '[node alpha]\naddress = 10.77.1.1:7789\nnbd = unix:%s/alpha.sock\ndisk = %s/alpha.img\n' "$T" "$T"
    printf 'control = %s/alpha.ctl\nmetrics = unix:%s/alpha.metrics\n' "$T" "$T"
    printf '[node beta]\naddress = 10.77.1.2:7789\nnbd = unix:%s/beta.sock\ndisk = %s/beta.img\n' "$T" "$T"
    printf 'control = %s/beta.ctl\nlog = %s/beta.log\n' "$T" "$T"
} >"$T/conf/r0.res"
"$NBDM" create-md r0 --node alpha --skip-initial-sync >/dev/null
"$NBDM" create-md r0 --node beta --skip-initial-sync >/dev/null
out=$(ip netns exec "$(ns s1)" "$NBDM" up r0 --node beta) || fail "up r0 on beta: $out"
on_exit "kill -9 $(sed -n 's/.*, pid \([0-9]*\),.*/\1/p' <<<"$out") 2>/dev/null"

# what systemd would run: ExecStart with %i = r0 and its environment
exec_line=$(sed -n 's/^ExecStart=//p' "$UNIT" | sed "s|%i|r0|g; s|^/usr/sbin/nbdmirror|$T/root/usr/sbin/nbdmirror|")
reload_line=$(sed -n 's/^ExecReload=//p' "$UNIT" | sed "s|%i|r0|g; s|^/usr/sbin/nbdmirror|$T/root/usr/sbin/nbdmirror|")
# the notify socket: a datagram socket whose messages go to a file, one per line
"$PY" - "$T/notify" "$T/notify.txt" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as f:
    while True:
        f.write(s.recv(4096).decode().replace("\n", " ") + "\n")
PY
NPID=$!
on_exit "kill $NPID 2>/dev/null"
wait_sock "$T/notify"
# shellcheck disable=SC2086
NOTIFY_SOCKET=$T/notify ip netns exec "$(ns p)" unshare --uts sh -c 'hostname alpha && exec "$@"' sh \
    strace -f -qq -o "$T/strace.txt" $exec_line 2>"$T/alpha.log" &
APID=$!
on_exit "kill -9 $APID 2>/dev/null; pkill -9 -f -- '^$T/root/usr/sbin/nbdmirror up' 2>/dev/null"
for _ in $(seq 200); do
    grep -q READY=1 "$T/notify.txt" 2>/dev/null && break
    kill -0 $APID 2>/dev/null || fail "ExecStart exited before READY=1"
    sleep 0.05
done
grep -q "READY=1" "$T/notify.txt" || fail "no READY=1 in 10 s"
grep -q "STATUS=resource r0: secondary" "$T/notify.txt" || fail "no STATUS with READY: $(cat "$T/notify.txt")"
# READY means serving: the control socket and the export answer at once
"$NBDM" status r0 --node alpha >/dev/null || fail "READY=1 but status does not answer"
nbdinfo --size "nbd+unix:///?socket=$T/alpha.sock" >/dev/null || fail "READY=1 but the export does not answer"

# the metrics the file asks for, labelled with the resource
m=$(curl -sf --unix-socket "$T/alpha.metrics" http://localhost/metrics) || fail "no metrics endpoint"
grep -q '^nbdmirror_role{resource="r0",role="secondary"} 1' <<<"$m" || fail "metrics without resource=\"r0\": $(grep nbdmirror_role <<<"$m")"
"$NBDM" promote r0 --node alpha || fail "promote alpha"
wait_peers alpha 1
head -c 8M /dev/urandom >"$T/data"
nbdcopy "$T/data" "nbd+unix:///?socket=$T/alpha.sock" || fail "writing to alpha"
wait_synced alpha
cmp -n $((8 << 20)) "$T/data" "$T/beta.img" || fail "beta's disk does not have alpha's writes"
out=$(ip netns exec "$(ns p)" unshare --uts sh -c 'hostname alpha && exec "$@"' sh $reload_line) ||
    fail "ExecReload: $out"
grep -q "nothing changed" <<<"$out" || fail "ExecReload: $out"

log "SIGTERM (systemctl stop): STOPPING=1, exit status 0"
pkill -TERM -f -- "^$T/root/usr/sbin/nbdmirror up r0" || fail "no alpha daemon to stop"
rc=0
for _ in $(seq 200); do kill -0 $APID 2>/dev/null || break; sleep 0.05; done
kill -0 $APID 2>/dev/null && fail "alpha still runs 10 s after SIGTERM"
wait $APID || rc=$?
[ $rc -eq 0 ] || fail "ExecStart exited with status $rc after SIGTERM"
grep -q "STOPPING=1" "$T/notify.txt" || fail "no STOPPING=1"

log "every system call made is allowed by the unit's SystemCallFilter"
filter=$(sed -n 's/^SystemCallFilter=//p' "$UNIT")
# shellcheck disable=SC2086
"$PY" - "$T/strace.txt" $filter <<'PY' || fail "system calls outside the filter"
import re, subprocess, sys
out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True).stdout
groups, cur = {}, None
for line in out.splitlines():
    if line.startswith("@"):
        cur = line.split()[0]
        groups[cur] = []
    elif cur and line.strip() and not line.strip().startswith("#"):
        groups[cur].append(line.strip())
def expand(names, seen):
    res = set()
    for n in names:
        if n.startswith("@"):
            if n not in seen:
                seen.add(n)
                res |= expand(groups.get(n, []), seen)
        else:
            res.add(n)
    return res
allowed = expand(sys.argv[2:], set())
used = set()
for line in open(sys.argv[1]):
    m = re.match(r"\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", line)
    if m and not line.split(None, 1)[1].startswith(("+++", "---")):
        used.add(m.group(1))
# up runs as `sh` first: what exec'ing our program takes is systemd's job
used -= {"execve"}
bad = sorted(u for u in used if u not in allowed and u not in ("resumed",))
print(f"{len(used)} distinct system calls, all in the filter" if not bad else f"not allowed: {bad}")
sys.exit(1 if bad else 0)
PY

log "a broken resource file: ExecStart fails, never READY=1"
: >"$T/notify.txt"
echo "colour = blue" >>"$T/conf/r0.res"
rc=0
NOTIFY_SOCKET=$T/notify ip netns exec "$(ns p)" unshare --uts sh -c 'hostname alpha && exec "$@"' sh \
    $exec_line 2>"$T/broken.log" || rc=$?
[ $rc -ne 0 ] || fail "ExecStart with a broken file exited 0"
grep -q "r0.res:.*unknown key 'colour'" "$T/broken.log" || fail "no line-numbered error: $(cat "$T/broken.log")"
sleep 0.2
grep -q READY "$T/notify.txt" && fail "READY=1 from a node that did not start"
sed -i '/^colour/d' "$T/conf/r0.res"
ip netns exec "$(ns s1)" "$NBDM" down r0 --node beta >/dev/null || fail "down r0 on beta"
echo "systemd: ok"
