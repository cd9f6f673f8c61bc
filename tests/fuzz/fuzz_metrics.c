/* libFuzzer target: the metrics endpoint as the daemon runs it. Each input
 * is everything one HTTP client sends on one connection; the real server
 * (event loop, connection layer, metrics.c, metrics_text.c over a status
 * record of two peers) answers it. The connection must end once the input
 * has (no hang: an answer shuts our side, the client's end closes it), with
 * nothing leaked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "peer.h"
#include "conn.h"
#include "hist.h"
#include "metrics.h"
#include "status.h"

static char sock_path[108];
static struct hist lat;

static void fill(struct node_status *st, struct metrics_hists *h)
{
    memset(st, 0, sizeof *st);
    strcpy(st->role, "primary");
    strcpy(st->disk, "UpToDate");
    strcpy(st->device, "/dev/\"fuzz\"\\\n\xff");
    strcpy(st->engine, "io_uring");
    st->writes = 3;
    st->npeers = 2;
    for (int i = 0; i < 2; i++) {
        struct status_peer *p = &st->peers[i];
        snprintf(p->address, sizeof p->address, "10.0.0.%d:7789", i + 1);
        strcpy(p->connection, "Connected");
        strcpy(p->replication, i ? "SyncSource" : "Established");
        strcpy(p->peer_disk, "UpToDate");
        strcpy(p->peer_role, "Secondary");
        p->resync_percent = i ? 50 : -1;
        p->lag_ms = 1234;
    }
    hist_add(&lat, 30000);
    *h = (struct metrics_hists){ &lat, &lat, NULL };
}

static bool busy(void) { return false; }

static void stop(void) { metrics_stop(); /* removes the socket */ }

static void turn(int timeout_ms)
{
    loop_wait(stream_any_dirty() ? 0 : timeout_ms);
    stream_flush_dirty();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char spec[128];

    (void)argc, (void)argv;
    nm_log_silence(!getenv("FUZZ_LOG"));
    fuzz_sock_path(sock_path, sizeof sock_path, "metrics");
    snprintf(spec, sizeof spec, "unix:%s", sock_path);
    if (loop_init() < 0 || metrics_start(spec, fill) < 0) {
        fprintf(stderr, "fuzz_metrics: cannot listen on %s\n", sock_path);
        exit(1);
    }
    metrics_set_resource("fuzz\"r");
    atexit(stop);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_peer_run(sock_path, data, size, turn, busy);
    return 0;
}
