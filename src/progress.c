/* Progress of long-running work on a terminal: one line, redrawn in place
 * at most ten times a second, and replaced by the final words. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "nbdmirror.h"

#define REDRAW_MS 100

FILE *progress_tty(void)
{
    return isatty(STDERR_FILENO) ? stderr : isatty(STDOUT_FILENO) ? stdout : NULL;
}

void progress_start(struct progress *pg, FILE *tty, const char *label)
{
    memset(pg, 0, sizeof *pg);
    pg->tty = tty;
    pg->t0 = now_ms();
    snprintf(pg->label, sizeof pg->label, "%s", label);
}

static void human(char *buf, size_t len, double v)
{
    static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    unsigned u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

void progress_show(struct progress *pg, uint64_t done, uint64_t total, uint64_t rate, bool now)
{
    uint64_t t = now_ms();
    char d[32], tot[32], r[32], rs[40] = "", eta[32] = "";

    if (!pg->tty || (!now && pg->drawn && t - pg->drawn_ms < REDRAW_MS))
        return;
    if (!pg->seen_ms || done < pg->seen_done) { /* (a new sync starts from 0) */
        pg->seen_ms = t;
        pg->seen_done = done;
    }
    if (!rate && t > pg->seen_ms + 500)
        rate = (done - pg->seen_done) * 1000 / (t - pg->seen_ms);
    human(d, sizeof d, done);
    human(tot, sizeof tot, total);
    human(r, sizeof r, rate);
    if (rate) /* not yet known: nothing rather than a wrong number */
        snprintf(rs, sizeof rs, ", %s/s", r);
    if (rate && total > done) {
        uint64_t s = (total - done) / rate;
        if (s >= 3600)
            snprintf(eta, sizeof eta, ", ETA %llu:%02llu:%02llu", (unsigned long long)s / 3600,
                     (unsigned long long)s / 60 % 60, (unsigned long long)s % 60);
        else
            snprintf(eta, sizeof eta, ", ETA %llu:%02llu", (unsigned long long)s / 60,
                     (unsigned long long)s % 60);
    }
    unsigned pct = total ? (unsigned)(done >= total ? 100 : done * 100 / total) : 100;
    fprintf(pg->tty, "\r%s: %3u%% %s of %s%s%s\033[K", pg->label, pct, d, tot, rs, eta);
    fflush(pg->tty);
    pg->drawn = true;
    pg->drawn_ms = t;
}

/* One message in place of the bar: "label: message", then `end`. */
static void vmessage(struct progress *pg, const char *end, const char *fmt, va_list ap)
{
    fprintf(pg->tty, "\r%s: ", pg->label);
    vfprintf(pg->tty, fmt, ap);
    fputs(end, pg->tty);
    fflush(pg->tty);
}

void progress_note(struct progress *pg, const char *fmt, ...)
{
    va_list ap;

    if (!pg->tty)
        return;
    va_start(ap, fmt);
    vmessage(pg, "\033[K", fmt, ap);
    va_end(ap);
    pg->drawn = true;
    pg->drawn_ms = now_ms();
}

void progress_end(struct progress *pg, const char *fmt, ...)
{
    va_list ap;

    if (!pg->tty)
        return;
    va_start(ap, fmt);
    vmessage(pg, "\033[K\n", fmt, ap);
    va_end(ap);
    pg->drawn = false;
}
