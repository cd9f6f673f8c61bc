# engine-independent: the event loop's polling (run with io_uring)
# Polling before the loop sleeps (--poll-us): requests are served and
# verified with polling at its default, at its maximum and off; an idle
# server stops polling at once (next to no CPU over seconds, with a silent
# client attached, even at the 10 ms maximum); out-of-range values are
# refused. (Timers that used to ride on epoll_wait's timeout, now a periodic
# timerfd, are exercised by the handshake and reconnect tests.)
. "$(dirname "$0")/lib.bash"

new_disk "$T/disk" 64M
TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for poll in default 10000 0; do
    opts=()
    [ "$poll" = default ] || opts=(--poll-us "$poll")
    log "--poll-us $poll: 4 KiB writes at QD1 and QD8, verified"
    start_server "$T/disk" --direct "${opts[@]}"
    for qd in 1 8; do
        fio --name=p --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=$qd \
            --size=32M --io_size=4M --verify=crc32c --verify_fatal=1 --randrepeat=0 \
            --output="$T/fio.out" || { cat "$T/fio.out"; fail "fio --iodepth=$qd with --poll-us $poll"; }
    done
    # a silent client stays attached: the loop has a connection but no work
    "$PY" -c '
import nbd, sys, time
h = nbd.NBD(); h.connect_uri(sys.argv[1]); h.pread(4096, 0); time.sleep(30)' "$URI" &
    idle=$!
    on_exit "kill $idle 2>/dev/null"
    sleep 1
    c0=$(cpu_ticks "$SERVER_PID")
    sleep 3
    used=$(( $(cpu_ticks "$SERVER_PID") - c0 ))
    echo "idle for 3 s: $used ticks of CPU ($TICK a second)"
    # 5% of one core at most; a loop that kept polling would take ~100%
    [ "$used" -le $((TICK * 3 / 20)) ] || fail "idle server used $used ticks in 3 s with --poll-us $poll"
    kill $idle 2>/dev/null || true
    wait $idle 2>/dev/null || true
    stop_server
done

log "out-of-range values are refused"
refuses_values --poll-us "poll-us takes 0 to 10000" 10001 -1 x
echo "ok"
