/* nbdmirror create-md: writes fresh metadata for a disk. Almost all of its
 * time goes into zeroing the bitmaps (31 peer slots of 32 KiB per GiB of
 * data: about 1 GiB for a 1 TiB disk); on a terminal that shows progress. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "meta.h"
#include "nbdmirror.h"

static const char usage[] =
    "Usage: nbdmirror create-md DISK [--meta FILE] [--force] [--skip-initial-sync]\n"
    "       nbdmirror create-md NAME [--config FILE] [--node NAME] [--force] [--skip-initial-sync]\n"
    "\n"
    "Write fresh nbdmirror metadata for DISK (a file or a block device), or for\n"
    "this node's disk of resource NAME (its disk and meta in the resource file).\n"
    "By default the metadata is internal: it takes the end of DISK, so the\n"
    "exported size is smaller than DISK (see nbdmirror(8) for by how much).\n"
    "\n"
    "  --meta FILE  keep the metadata in FILE instead (external); all of\n"
    "               DISK is exported\n"
    "  --force      overwrite existing nbdmirror metadata\n"
    "  --skip-initial-sync\n"
    "               mark the disk in sync with its peers from the start; only\n"
    "               when every node of a new set has an equal disk (all zero)\n";

#define PROGRESS_MIN (64u << 20) /* less metadata than this is written at once */

static void on_progress(void *arg, uint64_t done, uint64_t total)
{
    progress_show(arg, done, total, 0, done == total);
}

int cmd_create_md(int argc, char **argv)
{
    static const struct option opts[] = {
        { "meta", required_argument, 0, 'm' },
        { "force", no_argument, 0, 'f' },
        { "skip-initial-sync", no_argument, 0, 's' },
        { "help", no_argument, 0, 'h' },
        TARGET_OPTIONS,
        { 0, 0, 0, 0 },
    };
    static struct target t;
    char rpath[RES_VALUE_MAX];
    const char *disk, *meta_path = NULL, *why = NULL;
    bool force = false, skip_sync = false, blockdev, internal;
    uint64_t size;
    uint8_t sb[META_SB_SIZE];
    struct meta m, old;
    int o, dfd, mfd, r, rc[META_SB_COPIES];

    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'm': meta_path = optarg; break;
        case 'f': force = true; break;
        case 's': skip_sync = true; break;
        case 1101: t.config = optarg; break;
        case 1102: t.node = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind != argc - 1 && !(t.config && optind == argc)) {
        fputs(usage, stderr);
        return 2;
    }
    disk = optind < argc ? argv[optind] : NULL;
    /* a word naming a resource file picks that; DISK is anything else */
    if (disk && res_is_name(disk))
        res_path(rpath, sizeof rpath, disk, t.config);
    if (!disk || (res_is_name(disk) && (t.config || access(rpath, F_OK) == 0))) {
        if (meta_path) {
            fprintf(stderr, "nbdmirror create-md: --meta comes from the resource file\n");
            return 2;
        }
        if ((r = target_resolve(&t, "create-md", disk, NULL)) != 0)
            return r;
        disk = res_get(&t.res, t.self, RK_DISK);
        if (strcmp(res_get(&t.res, t.self, RK_META), "internal"))
            meta_path = res_get(&t.res, t.self, RK_META);
    }
    internal = meta_path == NULL;
    dfd = open(disk, O_RDWR | O_CLOEXEC);
    if (dfd < 0) {
        fprintf(stderr, "nbdmirror create-md: %s: %s\n", disk, strerror(errno));
        return 1;
    }
    r = fd_size(dfd, &size, &blockdev);
    if (r < 0) {
        fprintf(stderr, "nbdmirror create-md: %s: %s\n", disk,
                r == -EINVAL ? "not a regular file or block device" : strerror(-r));
        return 1;
    }
    mfd = dfd;
    if (!internal) {
        mfd = open(meta_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (mfd < 0) {
            fprintf(stderr, "nbdmirror create-md: %s: %s\n", meta_path, strerror(errno));
            return 1;
        }
    }
    r = meta_plan(&m, size, internal);
    if (r < 0) {
        fprintf(stderr, "nbdmirror create-md: %s: too small (%llu bytes) for metadata and 1 MiB of data\n",
                disk, (unsigned long long)size);
        return 1;
    }
    /* Existing metadata (even corrupt, as long as our magic is there, in
     * either superblock copy) is only overwritten on request: it may hold
     * the only record of what a peer is missing. */
    for (unsigned i = 0; i < META_SB_COPIES; i++) {
        rc[i] = -ENOENT;
        if (full_pread(mfd, sb, sizeof sb, meta_sb_offset(size, internal, i)) == 0)
            rc[i] = meta_decode(&old, sb, &why);
    }
    if ((rc[0] != -ENOENT || rc[1] != -ENOENT) && !force) {
        fprintf(stderr,
                "nbdmirror create-md: %s already holds nbdmirror metadata%s; "
                "use --force to overwrite it\n", internal ? disk : meta_path,
                rc[0] == -EPROTONOSUPPORT || rc[1] == -EPROTONOSUPPORT
                    ? " (of an unsupported format version)"
                : rc[0] < 0 && rc[1] < 0 ? " (damaged)"
                : rc[0] < 0 || rc[1] < 0 ? " (one superblock copy damaged)" : "");
        return 1;
    }
    m.disk_state = DS_INCONSISTENT; /* a first full sync decides its content */
    if (skip_sync) {
        /* every node made this way holds the same (zeroed) data and says
         * so with the same id: they start equal, no sync */
        m.flags |= META_F_SKIP_SYNC;
        m.disk_state = DS_UPTODATE;
        m.current_gen = GEN_SKIP_SYNC;
    }
    struct progress pg;
    FILE *tty = m.meta_size >= PROGRESS_MIN ? progress_tty() : NULL;
    progress_start(&pg, tty, "create-md: zeroing the metadata");
    r = meta_create_progress(mfd, &m, tty ? on_progress : NULL, &pg);
    if (r == 0)
        progress_end(&pg, "%llu MiB written and flushed in %.1f s",
                     (unsigned long long)(m.meta_size >> 20), (now_ms() - pg.t0) / 1000.0);
    else if (pg.drawn)
        fputc('\n', tty);
    if (r < 0) {
        fprintf(stderr, "nbdmirror create-md: writing metadata: %s\n", strerror(-r));
        return 1;
    }
    printf("%s metadata written to %s\n", internal ? "internal" : "external",
           internal ? disk : meta_path);
    printf("disk %llu bytes, metadata %llu bytes, exported size %llu bytes\n",
           (unsigned long long)size, (unsigned long long)m.meta_size,
           (unsigned long long)m.data_size);
    if (mfd != dfd)
        close(mfd);
    close(dfd);
    return 0;
}
