/* nbdmirror up | down | adjust | dump: a node's part of a resource file
 * (nbdmirror.conf(5)), as drbdadm does it. `up` turns the file into serve's
 * options and runs serve, detached or in the foreground (systemd). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "ctl.h"
#include "nbdmirror.h"

struct res_cmd {
    const char *name, *args, *help;
};

static const struct res_cmd cmds[] = {
    { "up", "[--foreground]",
      "Start this node's part of resource NAME as a secondary: serve its disk, listen\n"
      "on its address and connect to the other nodes. Creates nothing (see\n"
      "create-md). Detached by default: returns once the node serves (0), or with\n"
      "the error (1); its log goes to the resource's 'log' file.\n"
      "  --foreground    stay in the foreground, log on stderr, and tell systemd\n"
      "                  (NOTIFY_SOCKET) when it serves: for nbdmirror@.service\n" },
    { "down", "",
      "Stop this node's part of resource NAME cleanly (requests in flight finish,\n"
      "peers are told) and wait until it has exited. Succeeds if it was not up.\n" },
    { "adjust", "",
      "Apply the resource file's changes to the running node: those a node takes\n"
      "while it runs (timeout, resync-rate, resync-csums, resync-control,\n"
      "after-sb-0pri, disk-depth) are applied; any other change is refused with\n"
      "what it needs (down and up). Exit status 1 if anything was refused.\n" },
    { "dump", "",
      "Print the parsed resource as JSON: every option with its effective value,\n"
      "every node, and which one this node is. Checks the file (exit status 1 with\n"
      "the line of the first error).\n" },
};

static int usage(const struct res_cmd *c, FILE *f)
{
    fprintf(f, "Usage: nbdmirror %s NAME [--config FILE] [--node NAME] %s\n\n%s\n" TARGET_HELP,
            c->name, c->args, c->help);
    return f == stdout ? 0 : 2;
}

static bool answers(const char *control)
{
    char *ans;
    size_t len;
    if (ctl_query(control, CTL_CMD_GET, &ans, &len) < 0)
        return false;
    free(ans);
    return true;
}

/* mkdir of the last component (/run/nbdmirror), as the service's runtime
 * directory would be */
static void make_parent(const char *path)
{
    char dir[RES_VALUE_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        mkdir(dir, 0755);
    }
}

/* serve's command line for this node of the resource */
static int serve_argv(const struct resource *r, const struct res_section *n, char **av, int max)
{
    int ac = 0;
#define ARG(s) do { if (ac < max - 1) av[ac++] = (char *)(s); } while (0)
#define OPT(o, k) do { if (*res_get(r, n, k)) { ARG(o); ARG(res_get(r, n, k)); } } while (0)
    ARG("serve");
    ARG(res_get(r, n, RK_DISK));
    ARG("--role");
    ARG("secondary");
    ARG("--nbd");
    ARG(res_get(r, n, RK_NBD));
    ARG("--listen");
    ARG(res_get(r, n, RK_ADDRESS));
    for (int i = 0; i < r->nnodes; i++)
        if (&r->nodes[i] != n) {
            ARG("--peer");
            ARG(res_get(r, &r->nodes[i], RK_ADDRESS));
        }
    ARG("--control");
    ARG(res_get(r, n, RK_CONTROL));
    ARG("--protocol");
    ARG(res_get(r, n, RK_PROTOCOL));
    ARG("--timeout");
    ARG(res_get(r, n, RK_TIMEOUT));
    if (strcmp(res_get(r, n, RK_RESYNC_RATE), "0"))
        OPT("--resync-rate", RK_RESYNC_RATE);
    if (res_get_bool(r, n, RK_RESYNC_CSUMS))
        ARG("--resync-csums");
    if (!res_get_bool(r, n, RK_RESYNC_CONTROL))
        ARG("--no-resync-control");
    OPT("--al-extents", RK_AL_EXTENTS);
    OPT("--after-sb-0pri", RK_AFTER_SB_0PRI);
    OPT("--peer-psk", RK_PEER_PSK);
    OPT("--peer-certificates", RK_PEER_CERTIFICATES);
    OPT("--tls", RK_TLS);
    OPT("--tls-certificates", RK_TLS_CERTIFICATES);
    OPT("--tls-psk", RK_TLS_PSK);
    if (res_get_bool(r, n, RK_TLS_VERIFY_PEER))
        ARG("--tls-verify-peer");
    ARG("--name");
    ARG(res_get(r, n, RK_EXPORT_NAME));
    if (strcmp(res_get(r, n, RK_META), "internal"))
        OPT("--meta", RK_META);
    OPT("--metrics", RK_METRICS);
    if (strcmp(res_get(r, n, RK_ENGINE), "auto"))
        OPT("--engine", RK_ENGINE);
    if (res_get_bool(r, n, RK_DIRECT))
        ARG("--direct");
    OPT("--poll-us", RK_POLL_US);
    if (strcmp(res_get(r, n, RK_DISK_DEPTH), "0"))
        OPT("--disk-depth", RK_DISK_DEPTH);
#undef OPT
#undef ARG
    av[ac] = NULL;
    return ac;
}

/* prints what the log got from offset on (a detached serve that failed) */
static void log_since(const char *path, off_t from)
{
    char buf[4096];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    while ((n = pread(fd, buf, sizeof buf, from)) > 0) {
        fwrite(buf, 1, n, stderr);
        from += n;
    }
    close(fd);
}

static int up(struct target *t, bool foreground)
{
    const struct resource *r = &t->res;
    const struct res_section *n = t->self;
    static char *av[4 * RES_MAX_NODES + 64];
    char *settings = NULL;
    size_t slen;
    int ac, pfd[2];

    if (answers(t->control)) {
        fprintf(stderr, "nbdmirror up: %s is already up on this node (%s answers)\n", r->name,
                t->control);
        return 1;
    }
    FILE *sf = open_memstream(&settings, &slen);
    if (!sf)
        return 1;
    res_settings(sf, r, n);
    fclose(sf);
    ac = serve_argv(r, n, av, sizeof av / sizeof av[0]);
    make_parent(t->control);
    if (foreground) {
        serve_from_resource(r->name, settings, -1);
        optind = 0; /* serve parses its own options */
        return cmd_serve(ac, av);
    }

    const char *logp = res_get(r, n, RK_LOG);
    struct stat st;
    make_parent(logp);
    int lfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (lfd < 0) {
        fprintf(stderr, "nbdmirror up: log %s: %s\n", logp, strerror(errno));
        return 1;
    }
    off_t start = fstat(lfd, &st) == 0 ? st.st_size : 0;
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return 1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "nbdmirror up: fork: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) { /* the daemon: its own session, no terminal */
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        close(pfd[0]);
        setsid();
        if (chdir("/") < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 ||
            dup2(lfd, 2) < 0)
            _exit(1);
        close(nul);
        close(lfd);
        serve_from_resource(r->name, settings, pfd[1]);
        optind = 0;
        _exit(cmd_serve(ac, av));
    }
    close(pfd[1]);
    close(lfd);
    char c = 0;
    ssize_t got;
    while ((got = read(pfd[0], &c, 1)) < 0 && errno == EINTR)
        ;
    close(pfd[0]);
    if (got == 1 && c == 'R') {
        printf("nbdmirror up: %s is up: node %s, secondary, pid %d, log %s\n", r->name, n->name,
               (int)pid, logp);
        free(settings);
        return 0;
    }
    int status = 0;
    waitpid(pid, &status, 0);
    fprintf(stderr, "nbdmirror up: %s did not start (exit status %d); its log (%s) says:\n",
            r->name, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), logp);
    log_since(logp, start);
    free(settings);
    return 1;
}

/* pid still runs: exists and is not a zombie nobody has reaped yet (the
 * detached daemon's parent is init, which may take its time) */
static bool running(long pid)
{
    char path[64], buf[256];
    if (pid <= 0 || (kill(pid, 0) < 0 && errno != EPERM))
        return false;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* after the command name */
    return !(p && p[1] == ' ' && p[2] == 'Z');
}

static int down(struct target *t)
{
    char *ans;
    size_t len;
    int r = ctl_query(t->control, "stop", &ans, &len);
    long pid = 0;

    if (r == -ENOENT || r == -ECONNREFUSED) {
        printf("nbdmirror down: %s is not up on this node\n", t->res.name);
        return 0;
    }
    if (r < 0 || strncmp(ans, "ok: ", 4)) {
        fprintf(stderr, "nbdmirror down: %s: %s\n", t->control, r < 0 ? strerror(-r) : ans);
        if (r == 0)
            free(ans);
        return 1;
    }
    sscanf(ans, "ok: stopping (pid %ld)", &pid);
    free(ans);
    /* gone: its socket answers no more and its process has exited (it
     * flushes the disk after closing the socket) */
    for (int i = 0; i < 1200; i++) {
        bool alive = answers(t->control) || running(pid);
        if (!alive) {
            printf("nbdmirror down: %s is down\n", t->res.name);
            return 0;
        }
        nanosleep(&(struct timespec){ 0, 50000000 }, NULL);
    }
    fprintf(stderr, "nbdmirror down: %s still running after 60 s (pid %ld)\n", t->res.name, pid);
    return 1;
}

/* the value of key in "key=value" lines, or NULL */
static const char *setting(const char *lines, const char *key, char *out, size_t len)
{
    size_t kl = strlen(key);
    for (const char *p = lines; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, key, kl) && p[kl] == '=') {
            size_t vl = strcspn(p + kl + 1, "\n");
            snprintf(out, len, "%.*s", (int)vl, p + kl + 1);
            return out;
        }
    return NULL;
}

static int adjust(struct target *t)
{
    char *running, *want = NULL, *ans;
    char was[RES_VALUE_MAX], now[RES_VALUE_MAX], cmd[RES_VALUE_MAX + 64];
    size_t len, wlen;
    int r = ctl_query(t->control, "config", &running, &len), refused = 0, changed = 0;

    if (r < 0) {
        fprintf(stderr, "nbdmirror adjust: cannot reach %s: %s (is %s up? 'nbdmirror up %s')\n",
                t->control, strerror(-r), t->res.name, t->res.name);
        return 1;
    }
    if (strncmp(running, "ok:\n", 4)) {
        fprintf(stderr, "nbdmirror adjust: %s: %s", t->control,
                !strncmp(running, "error: ", 7) ? running + 7 : running);
        free(running);
        return 1;
    }
    FILE *f = open_memstream(&want, &wlen);
    if (!f) {
        free(running);
        return 1;
    }
    res_settings(f, &t->res, t->self);
    fclose(f);
    for (int k = 0; k <= RK_COUNT; k++) {
        const char *key = k < RK_COUNT ? res_key_name(k) : "peers";
        if (!setting(want, key, now, sizeof now))
            continue;
        if (!setting(running + 4, key, was, sizeof was) || !strcmp(was, now))
            continue;
        changed++;
        if (k == RK_COUNT || !res_key_runtime(k)) {
            fprintf(stderr, "nbdmirror adjust: %s: %s '%s' -> '%s' needs a restart of the node "
                            "('nbdmirror down %s', then 'up'); not applied\n",
                    t->res.name, key, was, now, t->res.name);
            refused++;
            continue;
        }
        snprintf(cmd, sizeof cmd, "set %s %s", key, now);
        r = ctl_query(t->control, cmd, &ans, &len);
        if (r < 0 || strncmp(ans, "ok: ", 4)) {
            fprintf(stderr, "nbdmirror adjust: %s: %s: %s", t->res.name, key,
                    r < 0 ? strerror(-r) : !strncmp(ans, "error: ", 7) ? ans + 7 : ans);
            if (r < 0)
                fputc('\n', stderr);
            refused++;
        } else {
            printf("nbdmirror adjust: %s: %s '%s' -> '%s'\n", t->res.name, key, was, now);
        }
        if (r == 0)
            free(ans);
    }
    if (!changed)
        printf("nbdmirror adjust: %s: nothing changed\n", t->res.name);
    free(want);
    free(running);
    return refused ? 1 : 0;
}

int cmd_resource(int argc, char **argv)
{
    static const struct option opts[] = {
        { "foreground", no_argument, 0, 'f' },
        { "help", no_argument, 0, 'h' },
        TARGET_OPTIONS,
        { 0, 0, 0, 0 },
    };
    static struct target t;
    const struct res_cmd *c = NULL;
    bool foreground = false;
    int o, r;

    for (unsigned i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[0], cmds[i].name))
            c = &cmds[i];
    if (!c)
        return 2;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'f':
            if (strcmp(c->name, "up"))
                return usage(c, stderr);
            foreground = true;
            break;
        case 1101: t.config = optarg; break;
        case 1102: t.node = optarg; break;
        case 'h': return usage(c, stdout);
        default: return usage(c, stderr);
        }
    }
    if (optind != argc - 1 && !(t.config && optind == argc))
        return usage(c, stderr);
    const char *name = optind < argc ? argv[optind] : NULL;
    if (!strcmp(c->name, "dump")) { /* the file alone; any node may read it */
        char err[600], path[RES_VALUE_MAX];
        if (name && !res_is_name(name)) {
            fprintf(stderr, "nbdmirror dump: '%s' is not a resource name\n", name);
            return 2;
        }
        res_path(path, sizeof path, name, t.config);
        if (res_load(&t.res, path, t.config ? NULL : name, err, sizeof err) < 0) {
            fprintf(stderr, "nbdmirror dump: %s\n", err);
            return 1;
        }
        res_dump_json(stdout, &t.res, res_this_node(&t.res, t.node, err, sizeof err));
        res_free(&t.res);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if ((r = target_resolve(&t, c->name, name, NULL)) != 0)
        return r;
    if (!strcmp(c->name, "up"))
        r = up(&t, foreground);
    else if (!strcmp(c->name, "down"))
        r = down(&t);
    else
        r = adjust(&t);
    target_free(&t);
    return r;
}

bool cmd_resource_known(const char *name)
{
    for (unsigned i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(name, cmds[i].name))
            return true;
    return false;
}
