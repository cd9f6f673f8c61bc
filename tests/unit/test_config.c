/* Resource files: a good file gives every node its values (own, else the
 * resource's, else the default), and every kind of mistake is refused with
 * the line it is on. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"

static struct resource r;
static char err[600];

static int parse(const char *text)
{
    memset(&r, 0, sizeof r);
    strcpy(r.path, "r0.res");
    strcpy(r.name, "r0");
    err[0] = '\0';
    int rc = res_parse(&r, text, strlen(text), err, sizeof err);
    if (rc < 0)
        res_free(&r);
    return rc;
}

#define TWO_NODES                                                                  \
    "[node alpha]\naddress = 10.0.0.1:7789\nnbd = unix:/run/r0.sock\ndisk = /dev/sdb\n" \
    "[node beta]\naddress = 10.0.0.2:7789\nnbd = unix:/run/r0.sock\ndisk = /dev/sdc\n"

/* text must be refused with exactly this message */
static void refused(const char *text, const char *want)
{
    CHECK(parse(text) < 0);
    if (strcmp(err, want))
        fprintf(stderr, "  got:  %s\n  want: %s\n", err, want);
    CHECK(!strcmp(err, want));
}

static void test_good(void)
{
    CHECK(parse("# a comment\n"
                "[resource]\n"
                "protocol = B   # inline comment\n"
                "resync-rate = 100M\n"
                "disk = /dev/vdb\n"
                "export-name = \"my disk # 1\"\n"
                "peer-psk = /etc/nbdmirror/r0.psk\n"
                "\n"
                "[node alpha]\n"
                "address = 10.0.0.1:7789\n"
                "nbd = 10.0.0.1:10809\n"
                "meta = /var/lib/nbdmirror/r0.meta\n"
                "poll-us = 0\n"
                "  ; also a comment\n"
                "[node beta]\r\n"
                "address = [fd00::2]:7789\r\n"
                "nbd = unix:/run/nbdmirror/r0.sock\n"
                "disk = /dev/vdc\n") == 0);
    if (err[0])
        fprintf(stderr, "  %s\n", err);
    CHECK(r.nnodes == 2);
    const struct res_section *a = res_this_node(&r, "alpha", err, sizeof err);
    const struct res_section *b = res_this_node(&r, "beta", err, sizeof err);
    CHECK(a && b);
    if (!a || !b)
        return;
    CHECK(!strcmp(res_get(&r, a, RK_PROTOCOL), "B"));
    CHECK(!strcmp(res_get(&r, a, RK_DISK), "/dev/vdb"));   /* the resource's */
    CHECK(!strcmp(res_get(&r, b, RK_DISK), "/dev/vdc"));   /* its own */
    CHECK(!strcmp(res_get(&r, b, RK_ADDRESS), "[fd00::2]:7789"));
    CHECK(!strcmp(res_get(&r, a, RK_META), "/var/lib/nbdmirror/r0.meta"));
    CHECK(!strcmp(res_get(&r, b, RK_META), "internal"));   /* the default */
    CHECK(!strcmp(res_get(&r, a, RK_EXPORT_NAME), "my disk # 1"));
    CHECK(!strcmp(res_get(&r, a, RK_TIMEOUT), "5"));
    CHECK(!strcmp(res_get(&r, a, RK_POLL_US), "0"));
    CHECK(!strcmp(res_get(&r, b, RK_POLL_US), "100")); /* serve's default */
    CHECK(!strcmp(res_get(&r, b, RK_CONTROL), "/run/nbdmirror/r0.ctl"));
    CHECK(res_get_bool(&r, a, RK_RESYNC_CONTROL) && !res_get_bool(&r, a, RK_RESYNC_CSUMS));
    CHECK(res_this_node(&r, "gamma", err, sizeof err) == NULL &&
          strstr(err, "no [node gamma]") && strstr(err, "alpha, beta"));

    /* the settings adjust compares: every key once, and the other nodes */
    char *text = NULL;
    size_t len;
    FILE *f = open_memstream(&text, &len);
    res_settings(f, &r, a);
    fclose(f);
    CHECK(strstr(text, "protocol=B\n") && strstr(text, "resync-rate=100M\n"));
    CHECK(strstr(text, "\npeers=[fd00::2]:7789\n"));
    free(text);
    res_free(&r);
}

static void test_errors(void)
{
    refused("[resource]\nprotcol = C\n" TWO_NODES, "r0.res:2: unknown key 'protcol' in [resource]");
    refused(TWO_NODES "colour = blue\n", "r0.res:9: unknown key 'colour' in [node beta]");
    refused("[resource]\nprotocol = C\n\nprotocol = A\n" TWO_NODES,
            "r0.res:4: 'protocol' given twice (first on line 2)");
    refused(TWO_NODES "disk = /dev/sdd\n", "r0.res:9: 'disk' given twice (first on line 8)");
    refused("[resource]\nprotocol = D\n" TWO_NODES, "r0.res:2: protocol: 'D' is not A, B or C");
    refused("[resource]\ntimeout = 0\n" TWO_NODES, "r0.res:2: timeout: '0' is not 1 to 3600 seconds");
    refused("[resource]\ntimeout = soon\n" TWO_NODES,
            "r0.res:2: timeout: 'soon' is not 1 to 3600 seconds");
    refused("[resource]\nresync-rate = fast\n" TWO_NODES,
            "r0.res:2: resync-rate: 'fast' is not a number of bytes per second (e.g. 50M; 0: no cap)");
    refused("[resource]\nresync-csums = maybe\n" TWO_NODES,
            "r0.res:2: resync-csums: 'maybe' is not yes or no");
    refused("[resource]\nal-extents = 10\n" TWO_NODES, "r0.res:2: al-extents: '10' is not 64 to 4088");
    refused("[resource]\npoll-us = 10001\n" TWO_NODES, "r0.res:2: poll-us: '10001' is not 0 to 10000");
    refused("[resource]\ndisk-depth = 4097\n" TWO_NODES, "r0.res:2: disk-depth: '4097' is not 0 to 4096");
    refused("[resource]\nafter-sb-0pri = pray\n" TWO_NODES,
            "r0.res:2: after-sb-0pri: 'pray' is not disconnect, discard-zero-changes or "
            "discard-younger-primary");
    refused("[resource]\ntls = maybe\n" TWO_NODES, "r0.res:2: tls: 'maybe' is not off, on or require");
    refused("[resource]\nengine = fast\n" TWO_NODES,
            "r0.res:2: engine: 'fast' is not auto, uring or aio");
    refused("[node alpha]\naddress = 10.0.0.1\n", "r0.res:2: address: '10.0.0.1' is not HOST:PORT");
    refused("[node alpha]\naddress = 10.0.0.1:99999\n",
            "r0.res:2: address: '10.0.0.1:99999' is not HOST:PORT (port 1-65535)");
    refused("[node alpha]\nnbd = /run/x.sock\n",
            "r0.res:2: nbd: '/run/x.sock' is not unix:/ABSOLUTE/PATH or HOST:PORT");
    refused("[node alpha]\ndisk = sdb\n", "r0.res:2: disk: 'sdb' is not an absolute path");
    refused("[node alpha]\nmeta = external\n",
            "r0.res:2: meta: 'external' is not 'internal' or an absolute path");
    refused("[resource]\naddress = 10.0.0.1:7789\n",
            "r0.res:2: 'address' differs between nodes: give it in [node NAME]");
    refused("[node alpha]\nprotocol = A\n",
            "r0.res:2: 'protocol' is the same for every node: give it in [resource]");
    refused("protocol = A\n[resource]\n",
            "r0.res:1: 'protocol' before any section ([resource] or [node NAME])");
    refused("[resource]\n[resource]\n", "r0.res:2: [resource] given twice (first on line 1)");
    refused(TWO_NODES "[node alpha]\n", "r0.res:9: [node alpha] given twice (first on line 1)");
    refused("[nodes alpha]\n", "r0.res:1: unknown section '[nodes alpha]' (sections: [resource], "
                               "[node NAME])");
    refused("[global]\n", "r0.res:1: unknown section '[global]' (sections: [resource], [node NAME])");
    refused("[node al/pha]\n", "r0.res:1: 'al/pha' is not a node name (letters, digits, '-', '_', "
                               "'.'; as uname -n prints it)");
    refused("[node alpha\n", "r0.res:1: a section header is '[resource]' or '[node NAME]'");
    refused("[resource]\nprotocol C\n", "r0.res:2: expected 'key = value', '[resource]' or "
                                        "'[node NAME]'");
    refused("[resource]\nexport-name = \"open\n",
            "r0.res:2: export-name: the quoted value does not end with '\"'");
    /* what only the whole file shows */
    refused("[resource]\nprotocol = C\n", "r0.res: no [node NAME] section");
    refused("[node alpha]\naddress = 10.0.0.1:7789\nnbd = unix:/run/r0.sock\n",
            "r0.res:1: [node alpha] has no 'disk' (nor has [resource])");
    refused("[node alpha]\ndisk = /dev/sdb\nnbd = unix:/run/r0.sock\n",
            "r0.res:1: [node alpha] has no 'address'");
    refused("[resource]\nnbd = unix:/run/r0.sock\ndisk = /dev/sdb\n"
            "[node alpha]\naddress = 10.0.0.1:7789\n[node beta]\naddress = 10.0.0.1:7789\n",
            "r0.res:7: address: 10.0.0.1:7789 is node alpha's address too");
    refused("[resource]\npeer-psk = /k.psk\npeer-certificates = /pki\n" TWO_NODES,
            "r0.res:4: [node alpha]: peer-psk or peer-certificates, not both");
    refused("[resource]\ntls = require\n" TWO_NODES,
            "r0.res:3: [node alpha]: tls = require needs tls-certificates or tls-psk (one of them)");
    refused("[resource]\ntls-psk = /k.psk\n" TWO_NODES,
            "r0.res:3: [node alpha]: tls-certificates and tls-psk need tls = on or require");
    refused("[resource]\ntls = on\ntls-psk = /k.psk\ntls-verify-peer = yes\n" TWO_NODES,
            "r0.res:5: [node alpha]: tls-verify-peer needs tls-certificates");
    char big[6000];
    memset(big, 'x', sizeof big);
    memcpy(big, "[resource]\n#", 12);
    big[sizeof big - 1] = '\0';
    refused(big, "r0.res:2: line longer than 4095 bytes");
    refused("[resource]\nprotocol = C\0A\n", "r0.res: no [node NAME] section"); /* strlen stops */
    char nul[] = "[resource]\nprotocol = C\0A\n";
    memset(&r, 0, sizeof r);
    strcpy(r.path, "r0.res");
    CHECK(res_parse(&r, nul, sizeof nul - 1, err, sizeof err) < 0 &&
          !strcmp(err, "r0.res:2: a NUL byte (is this a text file?)"));
    res_free(&r);
    /* 33 nodes */
    char *many = malloc(64 * 40), *p = many;
    for (int i = 0; i < 33; i++)
        p += sprintf(p, "[node n%d]\n", i);
    refused(many, "r0.res:33: more than 32 nodes");
    free(many);
}

static void test_names(void)
{
    CHECK(res_is_name("r0") && res_is_name("web-data_1"));
    CHECK(!res_is_name("10.0.0.2:7789") && !res_is_name("/etc/r0.res") && !res_is_name(".hidden"));
    CHECK(!res_is_name(""));
}

int main(void)
{
    test_good();
    test_errors();
    test_names();
    return check_summary();
}
