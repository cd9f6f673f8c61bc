/* What a client command talks to: a resource NAME (its file gives this
 * node's control socket) or --control PATH. Shared by every subcommand that
 * reaches a running node. */
#include <stdio.h>
#include <string.h>

#include "nbdmirror.h"

int target_resolve(struct target *t, const char *cmd, const char *name, const char *control)
{
    char err[600], path[RES_VALUE_MAX];

    if (name && control) {
        fprintf(stderr, "nbdmirror %s: give a resource NAME or --control PATH, not both\n", cmd);
        return 2;
    }
    if (!name && !t->config) {
        snprintf(t->control, sizeof t->control, "%s", control ? control : NM_DEFAULT_CONTROL);
        return 0;
    }
    if (name && !res_is_name(name)) {
        fprintf(stderr, "nbdmirror %s: '%s' is not a resource name\n", cmd, name);
        return 2;
    }
    res_path(path, sizeof path, name, t->config);
    if (res_load(&t->res, path, t->config ? NULL : name, err, sizeof err) < 0) {
        fprintf(stderr, "nbdmirror %s: %s\n", cmd, err);
        return 1;
    }
    t->loaded = true;
    if (!(t->self = res_this_node(&t->res, t->node, err, sizeof err))) {
        fprintf(stderr, "nbdmirror %s: %s\n", cmd, err);
        return 1;
    }
    snprintf(t->control, sizeof t->control, "%s", res_get(&t->res, t->self, RK_CONTROL));
    return 0;
}

/* PEER may be a node's name in the resource: its address, then */
const char *target_peer(const struct target *t, const char *peer)
{
    if (!t->loaded || !peer)
        return peer;
    for (int i = 0; i < t->res.nnodes; i++)
        if (!strcmp(t->res.nodes[i].name, peer))
            return res_get(&t->res, &t->res.nodes[i], RK_ADDRESS);
    return peer;
}

void target_free(struct target *t)
{
    if (t->loaded)
        res_free(&t->res);
    t->loaded = false;
}
