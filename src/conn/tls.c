/* TLS credentials and sessions (GnuTLS), for the connection layer: X.509 in
 * the directory layout nbdkit and qemu use, or a pre-shared key in psktool's
 * file format. The record layer itself runs in stream.c (no kTLS here). */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"

/* TLS 1.2 at least (the NBD spec's rule), and for PSK the key exchanges
 * that use it, forward secret ones first. A TLS 1.3 pre-shared key is
 * bound to SHA-256, which rules out NORMAL's first suite (AES-256-GCM with
 * SHA-384) and left ChaCha20 next: on CPUs with AES instructions it cost
 * 4x the CPU of AES-128-GCM (1 MiB writes over a replication link: 2.7 ms
 * of CPU per MiB on the primary). So ChaCha20 goes last for PSK. */
#define PRIO_X509 "NORMAL:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1"
#define PRIO_PSK  PRIO_X509 ":-CHACHA20-POLY1305:+CHACHA20-POLY1305:+ECDHE-PSK:+DHE-PSK:+PSK"

struct tls_creds {
    bool psk, verify;
    gnutls_certificate_credentials_t srv, cli; /* X.509; cli may be srv */
    gnutls_psk_server_credentials_t psk_srv;
    gnutls_psk_client_credentials_t psk_cli;
};

static bool readable(const char *dir, const char *name, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", dir, name);
    return access(path, R_OK) == 0;
}

int tls_creds_x509(struct tls_creds **out, const char *dir, bool verify, char *err, size_t len)
{
    char ca[4096], cert[4096], key[4096];
    struct tls_creds *c = calloc(1, sizeof *c);
    int r;

    if (!c)
        return snprintf(err, len, "out of memory"), -ENOMEM;
    c->verify = verify;
    if (!readable(dir, "server-cert.pem", cert, sizeof cert) ||
        !readable(dir, "server-key.pem", key, sizeof key)) {
        snprintf(err, len, "%s: server-cert.pem and server-key.pem are needed", dir);
        free(c);
        return -ENOENT;
    }
    bool have_ca = readable(dir, "ca-cert.pem", ca, sizeof ca);
    if (verify && !have_ca) {
        snprintf(err, len, "%s: ca-cert.pem is needed to verify the other side", dir);
        free(c);
        return -ENOENT;
    }
    if ((r = gnutls_certificate_allocate_credentials(&c->srv)) < 0)
        goto fail;
    if ((r = gnutls_certificate_set_x509_key_file(c->srv, cert, key, GNUTLS_X509_FMT_PEM)) < 0) {
        snprintf(err, len, "%s, %s: %s", cert, key, gnutls_strerror(r));
        goto out;
    }
    if (have_ca && (r = gnutls_certificate_set_x509_trust_file(c->srv, ca, GNUTLS_X509_FMT_PEM)) < 0) {
        snprintf(err, len, "%s: %s", ca, gnutls_strerror(r));
        goto out;
    }
    c->cli = c->srv;
    /* a node that dials may have a certificate of its own for that */
    if (readable(dir, "client-cert.pem", cert, sizeof cert) &&
        readable(dir, "client-key.pem", key, sizeof key)) {
        if ((r = gnutls_certificate_allocate_credentials(&c->cli)) < 0)
            goto fail;
        if ((r = gnutls_certificate_set_x509_key_file(c->cli, cert, key, GNUTLS_X509_FMT_PEM)) < 0) {
            snprintf(err, len, "%s, %s: %s", cert, key, gnutls_strerror(r));
            goto out;
        }
        if (have_ca &&
            (r = gnutls_certificate_set_x509_trust_file(c->cli, ca, GNUTLS_X509_FMT_PEM)) < 0) {
            snprintf(err, len, "%s: %s", ca, gnutls_strerror(r));
            goto out;
        }
    }
    *out = c;
    return 0;
fail:
    snprintf(err, len, "%s", gnutls_strerror(r));
out:
    tls_creds_free(c);
    return -EINVAL;
}

int tls_creds_psk(struct tls_creds **out, const char *file, char *err, size_t len)
{
    struct tls_creds *c = calloc(1, sizeof *c);
    char line[1024] = "";
    FILE *f;
    int r;

    if (!c)
        return snprintf(err, len, "out of memory"), -ENOMEM;
    c->psk = c->verify = true;
    if (!(f = fopen(file, "re"))) {
        snprintf(err, len, "%s: %s", file, strerror(errno));
        free(c);
        return -errno;
    }
    /* the first entry is who we are when we dial */
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    char *colon = got ? strchr(line, ':') : NULL;
    if (!colon || colon == line) {
        snprintf(err, len, "%s: no 'username:hexkey' line (psktool -u NAME -p %s makes one)",
                 file, file);
        free(c);
        return -EINVAL;
    }
    *colon = '\0';
    char *hex = colon + 1;
    hex[strcspn(hex, "\r\n")] = '\0';
    gnutls_datum_t key = { (unsigned char *)hex, (unsigned)strlen(hex) };
    if ((r = gnutls_psk_allocate_server_credentials(&c->psk_srv)) < 0 ||
        (r = gnutls_psk_set_server_credentials_file(c->psk_srv, file)) < 0 ||
        (r = gnutls_psk_allocate_client_credentials(&c->psk_cli)) < 0 ||
        (r = gnutls_psk_set_client_credentials(c->psk_cli, line, &key, GNUTLS_PSK_KEY_HEX)) < 0) {
        snprintf(err, len, "%s: %s", file, gnutls_strerror(r));
        tls_creds_free(c);
        return -EINVAL;
    }
    *out = c;
    return 0;
}

void tls_creds_free(struct tls_creds *c)
{
    if (!c)
        return;
    if (c->cli && c->cli != c->srv)
        gnutls_certificate_free_credentials(c->cli);
    if (c->srv)
        gnutls_certificate_free_credentials(c->srv);
    if (c->psk_srv)
        gnutls_psk_free_server_credentials(c->psk_srv);
    if (c->psk_cli)
        gnutls_psk_free_client_credentials(c->psk_cli);
    free(c);
}

bool tls_creds_are_psk(const struct tls_creds *c) { return c->psk; }

int tls_session_new(void **out, const struct tls_creds *c, bool server, const char **why)
{
    gnutls_session_t s;
    int r = gnutls_init(&s, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NONBLOCK);

    if (r < 0) {
        *why = gnutls_strerror(r);
        return -ENOMEM;
    }
    if (c->psk)
        r = gnutls_credentials_set(s, GNUTLS_CRD_PSK, server ? (void *)c->psk_srv : (void *)c->psk_cli);
    else
        r = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, server ? c->srv : c->cli);
    if (r == 0)
        r = gnutls_priority_set_direct(s, c->psk ? PRIO_PSK : PRIO_X509, NULL);
    if (r < 0) {
        *why = gnutls_strerror(r);
        gnutls_deinit(s);
        return -EINVAL;
    }
    if (!c->psk && (!server || c->verify)) {
        /* a client always checks the server's certificate against the CA;
         * a server that verifies requires one from the client */
        if (server)
            gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
        gnutls_session_set_verify_cert(s, NULL, 0);
    }
    *out = s;
    return 0;
}

void tls_failure(void *session, int err, char *buf, size_t len)
{
    gnutls_session_t s = session;
    unsigned st;
    gnutls_datum_t out;

    if (err == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR &&
        (st = gnutls_session_get_verify_cert_status(s)) &&
        gnutls_certificate_verification_status_print(st, GNUTLS_CRT_X509, &out, 0) == 0) {
        snprintf(buf, len, "TLS: %s", out.data);
        gnutls_free(out.data);
        for (size_t n = strlen(buf); n && buf[n - 1] == ' '; n--)
            buf[n - 1] = '\0';
        return;
    }
    if (err == GNUTLS_E_WARNING_ALERT_RECEIVED || err == GNUTLS_E_FATAL_ALERT_RECEIVED)
        snprintf(buf, len, "TLS: %s: %s", gnutls_strerror(err),
                 gnutls_alert_get_name(gnutls_alert_get(s)));
    else
        snprintf(buf, len, "TLS: %s", gnutls_strerror(err));
}

void tls_describe(void *session, char *buf, size_t len)
{
    char *d = gnutls_session_get_desc(session);
    snprintf(buf, len, "%s", d ? d : "?");
    gnutls_free(d);
}
