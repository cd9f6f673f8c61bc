/* nbdmirror events: follows a running serve's event stream (the format is in
 * ctl.h) and prints it line by line, as the daemon wrote it or as JSON. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "nbdmirror.h"

static const char usage[] =
    "Usage: nbdmirror events [NAME | --control PATH] [--json] [--now]\n"
    "\n"
    "Follow a running 'nbdmirror serve': first its current state ('exists'\n"
    "lines, ending with 'exists -'), then one line per change as it happens\n"
    "('create', 'change', 'destroy'): the node's role and disk, each peer's\n"
    "connection, replication state, disk and role, resync start, progress\n"
    "(at most once a second) and end, split brain. Ends when serve stops.\n"
    "\n"
    TARGET_HELP
    "  --control PATH  its control socket (default " NM_DEFAULT_CONTROL ")\n"
    "  --json          one JSON object per line (keys in nbdmirror(8))\n"
    "  --now           print the current state, then exit\n";

static void json_string(const char *s, size_t len)
{
    putchar('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The value at *p (bare, or quoted with escapes) into out; advances *p past
 * it. Returns its length, or -1 if it is malformed. */
static long take_value(const char **p, char *out, size_t cap, bool *quoted)
{
    const char *s = *p;
    size_t n = 0;

    *quoted = *s == '"';
    if (!*quoted) {
        while (*s && *s != ' ' && n + 1 < cap)
            out[n++] = *s++;
        *p = s;
        return *s && *s != ' ' ? -1 : (long)n;
    }
    for (s++; *s != '"'; s++) {
        char c = *s;
        if (!c || n + 1 >= cap)
            return -1;
        if (c == '\\') {
            switch (*++s) {
            case '"': case '\\': c = *s; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'x':
                if (hexval(s[1]) < 0 || hexval(s[2]) < 0)
                    return -1;
                c = (char)(hexval(s[1]) << 4 | hexval(s[2]));
                s += 2;
                break;
            default: return -1;
            }
        }
        out[n++] = c;
    }
    *p = s + 1;
    return (long)n;
}

/* "VERB OBJECT KEY=VALUE..." as {"event":VERB,"object":OBJECT,"key":value,...};
 * '-' in keys becomes '_' (as in status --json), a bare value of digits is a
 * number. -1: not a line of that form. */
static int print_json(const char *line)
{
    char word[64], val[1024];
    const char *p = line;
    bool quoted;

    for (int i = 0; i < 2; i++) {
        if (i && *p++ != ' ')
            return -1;
        size_t n = strcspn(p, " ");
        if (!n || n >= sizeof word)
            return -1;
        memcpy(word, p, n);
        word[n] = '\0';
        printf(i ? ",\"object\":" : "{\"event\":");
        json_string(word, n);
        p += n;
    }
    while (*p == ' ') {
        const char *k = ++p;
        size_t kl = strcspn(k, "= ");
        if (!kl || k[kl] != '=' || kl >= sizeof word)
            return -1;
        for (size_t i = 0; i < kl; i++)
            word[i] = k[i] == '-' ? '_' : k[i];
        p = k + kl + 1;
        long vl = take_value(&p, val, sizeof val, &quoted);
        if (vl < 0)
            return -1;
        val[vl] = '\0';
        putchar(',');
        json_string(word, kl);
        putchar(':');
        if (!quoted && vl > 0 && vl < 20 && strspn(val, "0123456789") == (size_t)vl &&
            (val[0] != '0' || vl == 1))
            fwrite(val, 1, vl, stdout);
        else
            json_string(val, vl);
    }
    if (*p)
        return -1;
    puts("}");
    return 0;
}

int cmd_events(int argc, char **argv)
{
    static const struct option opts[] = {
        { "control", required_argument, 0, 'c' },
        { "json", no_argument, 0, 'j' },
        { "now", no_argument, 0, 'n' },
        { "help", no_argument, 0, 'h' },
        TARGET_OPTIONS,
        { 0, 0, 0, 0 },
    };
    static struct target t;
    const char *path = NULL, *name = NULL;
    bool json = false, now = false, started = false;
    char *line = NULL, hello[64];
    size_t cap = 0;
    ssize_t n;
    int o, fd, r;
    FILE *in;

    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': path = optarg; break;
        case 'j': json = true; break;
        case 'n': now = true; break;
        case 1101: t.config = optarg; break;
        case 1102: t.node = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind < argc)
        name = argv[optind++];
    if (optind != argc) {
        fputs(usage, stderr);
        return 2;
    }
    if ((r = target_resolve(&t, "events", name, path)) != 0)
        return r;
    path = t.control;
    target_free(&t); /* (its control path stays) */
    fd = ctl_connect(path, CTL_CMD_EVENTS);
    if (fd < 0) {
        fprintf(stderr, "nbdmirror events: cannot reach %s: %s (is 'nbdmirror serve' running?)\n",
                path, strerror(-fd));
        return 1;
    }
    if (!(in = fdopen(fd, "r"))) {
        perror("nbdmirror events");
        close(fd);
        return 1;
    }
    snprintf(hello, sizeof hello, "%s %d\n", CTL_EVENTS_MAGIC, CTL_EVENTS_VERSION);
    while ((n = getline(&line, &cap, in)) > 0) {
        if (line[n - 1] != '\n') {
            n = -1; /* cut short: the daemon went away mid-line */
            break;
        }
        if (!strncmp(line, "error: ", 7)) {
            fprintf(stderr, "nbdmirror events: %s", line + 7);
            break;
        }
        if (!started) {
            if (strcmp(line, hello)) {
                fprintf(stderr, "nbdmirror events: %s answered no event stream of version %d: %s",
                        path, CTL_EVENTS_VERSION, line);
                break;
            }
            started = true;
            continue;
        }
        line[n - 1] = '\0';
        if (!json)
            puts(line);
        else if (print_json(line) < 0) {
            fprintf(stderr, "\nnbdmirror events: a line not understood: %s\n", line);
            break;
        }
        if (fflush(stdout) != 0)
            break;
        if (now && !strcmp(line, "exists -")) {
            free(line);
            fclose(in);
            return 0;
        }
    }
    bool ended = n < 0 && started && !ferror(in) && !now; /* the daemon stopped */
    if (n < 0 && !started)
        fprintf(stderr, "nbdmirror events: %s closed the connection without an event stream "
                        "(too many clients at once, or a serve without 'events')\n", path);
    else if (n < 0 && now)
        fprintf(stderr, "nbdmirror events: %s stopped before it told its state\n", path);
    free(line);
    fclose(in);
    return ended && !ferror(stdout) ? 0 : 1;
}
