/* Logging: one line per event on stderr; service managers add their own
 * context, so keep it plain: time, level, message. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "common.h"

static const char *prog = "nbdmirror";
static bool silent;

void nm_log_init(const char *p) { prog = p; }
void nm_log_silence(bool on) { silent = on; }

void nm_log(const char *level, const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    if (silent)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %s: %s: ", tm.tm_hour,
                 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, prog, level);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line); /* one write: lines from threads do not mix */
}

bool log_ratelimit(struct ratelimit *rl)
{
    uint64_t now = now_ms();
    if (rl->last_ms && now - rl->last_ms < 1000) {
        rl->suppressed++;
        return false;
    }
    if (rl->suppressed)
        nm_log("warning", "(%u similar messages suppressed)", rl->suppressed);
    rl->last_ms = now;
    rl->suppressed = 0;
    return true;
}
