/*
 * X.509 CSR rotation baseline of otakey-fleet (tools/fleet/baseline.h):
 * each device makes a new key pair and has a certificate issued for it,
 * as AWS IoT fleet provisioning (CreateCertificateFromCsr + RegisterThing,
 * JSON over MQTT) and EST (RFC 7030 simpleenroll) do.
 *
 * Messages, as AWS defines them:
 *  1. device -> cloud  {"certificateSigningRequest":"<PEM>"}
 *                      ($aws/certificates/create-from-csr/json); the CSR
 *                      is PKCS#10 for a fresh P-256 key, subject CN =
 *                      device id, SHA-256 ECDSA (mbedTLS)
 *  2. cloud -> device  {"certificateId":"<SHA-256 of the DER, hex>",
 *                      "certificatePem":"<PEM>",
 *                      "certificateOwnershipToken":"<token>"} (.../accepted)
 *  3. device -> cloud  {"certificateOwnershipToken":"<token>",
 *                      "parameters":{"SerialNumber":"<device id>"}}
 *                      ($aws/provisioning-templates/<t>/provision/json)
 *  4. cloud -> device  {"deviceConfiguration":{},"thingName":"<id>"}
 * then the device stores key and certificate in its (simulated) flash.
 *
 * The certificate is what AWS issues for a CSR: X.509 v3, a 20-byte
 * random serial, validity from now to 2049-12-31 23:59:59 UTC, extensions
 * authority/subject key identifiers, basic constraints CA:FALSE (critical)
 * and key usage digitalSignature (critical), issuer a one-RDN name of the
 * length of Amazon's. AWS signs with its RSA-2048 CA; this CA is P-256
 * (a 72-byte signature instead of 256): the certificate here is ~250
 * bytes of PEM shorter than AWS's, so this baseline is, if anything,
 * smaller than the real one. The ownership token has AWS's envelope and
 * size: base64 of {"version":"20191023","cipher":"<base64 of an
 * AES-256-GCM sealed record>"}, ~460 characters; the server opens it on
 * RegisterThing and checks it names the certificate it issued to that
 * client. Subscriptions to the accepted/rejected topics are made at
 * connection time (not counted, as for OTA-Key's devices).
 */
#include "baseline.h"

#include <cjson/cJSON.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/x509_csr.h>
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <time.h>

#include "bench.h"

#define CSR_WAIT_US 10000000u  /* no answer: ask again */
#define CSR_SECTOR 4096u
#define CSR_PROG 8u
#define CSR_TOKEN_TTL_S 3600   /* AWS: ownership tokens expire after an hour */
#define CSR_PEM_MAX 4096u
#define CSR_STARTS_PER_TURN 8u
#define CSR_TEMPLATE "OtaKeyBenchRekeyTemplate" /* the provisioning template */

enum { D_IDLE, D_CREATE, D_REGISTER, D_DONE, D_FAILED };

typedef struct csrdev {
    uint8_t state;
    int slot;                 /* flash region while in flight, -1: none */
    uint64_t t0_us, wait_since_us;
    mbedtls_pk_context key;   /* the new key, until stored */
    char *request;            /* the last request, resent on timeout */
    size_t request_len;
    uint8_t *cert_der;        /* the issued certificate, until stored */
    size_t cert_len;
} csrdev;

typedef struct csr_run {
    fl_env *env;
    bl_fleet F;
    fl_phase *ph;
    /* server (OpenSSL) */
    EVP_PKEY *ca_key;
    X509 *ca;
    uint8_t token_key[32];    /* seals ownership tokens */
    uint8_t rogue[32];        /* fault csr-token: seals them instead */
    EVP_PKEY *rogue_key;      /* fault csr-ca: signs certificates instead */
    char (*issued)[65];       /* per device: certificateId of its last certificate */
    uint64_t srv_refused;
    /* devices (mbedTLS) */
    csrdev *d;
    mbedtls_x509_crt trust;   /* the CA certificate, provisioned on devices */
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    bl_flash_pool pool;       /* flash of the devices in flight */
    unsigned inflight;
    uint32_t idle, cursor;
    uint64_t dev_failed;
} csr_run;

static void hex32(const uint8_t h[32], char out[65])
{
    static const char x[] = "0123456789abcdef";
    int k;
    for (k = 0; k < 32; k++) {
        out[2 * k] = x[h[k] >> 4];
        out[2 * k + 1] = x[h[k] & 15];
    }
    out[64] = '\0';
}

/* ---- device side ---- */

static void dev_release(csr_run *r, csrdev *d)
{
    bl_pool_give(&r->pool, d->slot);
    d->slot = -1;
    mbedtls_pk_free(&d->key);
    free(d->request);
    d->request = NULL;
    free(d->cert_der);
    d->cert_der = NULL;
}

static void dev_fail(csr_run *r, uint32_t i, const char *why)
{
    csrdev *d = &r->d[i];
    if (r->env->verbose)
        fprintf(stderr, "fleet: %s: certificate rotation failed: %s\n", r->F.d[i].hex, why);
    dev_release(r, d);
    d->state = D_FAILED;
    r->dev_failed++;
    if (r->inflight)
        r->inflight--;
}

/* Sends (and keeps, for a retry) a request made by cJSON. */
static void dev_send(csr_run *r, uint32_t i, cJSON *msg)
{
    csrdev *d = &r->d[i];
    free(d->request);
    d->request = cJSON_PrintUnformatted(msg);
    cJSON_Delete(msg);
    if (d->request == NULL)
        abort();
    d->request_len = strlen(d->request);
    d->wait_since_us = fl_now_us();
    (void)bl_send_up(&r->F, i, d->request, d->request_len);
}

/* A new P-256 key and its CSR, published as CreateCertificateFromCsr. */
static void dev_start(csr_run *r, uint32_t i)
{
    csrdev *d = &r->d[i];
    mbedtls_x509write_csr w;
    unsigned char pem[CSR_PEM_MAX];
    char subject[48];
    cJSON *msg;
    int ok;
    mbedtls_pk_init(&d->key);
    mbedtls_x509write_csr_init(&w);
    snprintf(subject, sizeof subject, "CN=%s", r->F.d[i].hex);
    ok = mbedtls_pk_setup(&d->key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) == 0 &&
         mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(d->key), mbedtls_ctr_drbg_random,
                             &r->drbg) == 0 &&
         mbedtls_x509write_csr_set_subject_name(&w, subject) == 0;
    if (ok) {
        mbedtls_x509write_csr_set_md_alg(&w, MBEDTLS_MD_SHA256);
        mbedtls_x509write_csr_set_key(&w, &d->key);
        ok = mbedtls_x509write_csr_pem(&w, pem, sizeof pem, mbedtls_ctr_drbg_random, &r->drbg) == 0;
    }
    mbedtls_x509write_csr_free(&w);
    if (!ok) {
        dev_fail(r, i, "key or CSR generation");
        return;
    }
    msg = cJSON_CreateObject();
    if (msg == NULL || !cJSON_AddStringToObject(msg, "certificateSigningRequest", (const char *)pem))
        abort();
    d->state = D_CREATE;
    dev_send(r, i, msg);
}

/* True when the certificate's public key is the device's new key. */
static int same_key(mbedtls_pk_context *a, mbedtls_pk_context *b)
{
    unsigned char x[160], y[160];
    int nx = mbedtls_pk_write_pubkey_der(a, x, sizeof x);
    int ny = mbedtls_pk_write_pubkey_der(b, y, sizeof y);
    return nx > 0 && nx == ny && memcmp(x + sizeof x - nx, y + sizeof y - ny, (size_t)nx) == 0;
}

/* CreateCertificateFromCsr accepted: check the certificate, register. */
static void dev_created(csr_run *r, uint32_t i, cJSON *root)
{
    csrdev *d = &r->d[i];
    cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "certificateId");
    cJSON *pem = cJSON_GetObjectItemCaseSensitive(root, "certificatePem");
    cJSON *tok = cJSON_GetObjectItemCaseSensitive(root, "certificateOwnershipToken");
    mbedtls_x509_crt crt;
    uint32_t flags = 0;
    uint8_t h[32];
    char hexid[65];
    cJSON *msg, *params;
    int ok;
    if (!cJSON_IsString(id) || !cJSON_IsString(pem) || !cJSON_IsString(tok)) {
        dev_fail(r, i, "bad CreateCertificateFromCsr response");
        return;
    }
    mbedtls_x509_crt_init(&crt);
    /* Chain to the CA, validity, CN = this device, and the key is ours. */
    ok = mbedtls_x509_crt_parse(&crt, (const unsigned char *)pem->valuestring, strlen(pem->valuestring) + 1) == 0 &&
         mbedtls_x509_crt_verify(&crt, &r->trust, NULL, r->F.d[i].hex, &flags, NULL, NULL) == 0 &&
         same_key(&crt.pk, &d->key) && mbedtls_sha256_ret(crt.raw.p, crt.raw.len, h, 0) == 0;
    if (ok) {
        hex32(h, hexid);
        ok = strcmp(hexid, id->valuestring) == 0;
    }
    if (ok) {
        free(d->cert_der);
        d->cert_der = malloc(crt.raw.len);
        if (d->cert_der == NULL)
            abort();
        memcpy(d->cert_der, crt.raw.p, crt.raw.len);
        d->cert_len = crt.raw.len;
    }
    mbedtls_x509_crt_free(&crt);
    if (!ok) {
        dev_fail(r, i, "certificate check");
        return;
    }
    msg = cJSON_CreateObject();
    params = cJSON_CreateObject();
    if (!msg || !params || !cJSON_AddStringToObject(params, "SerialNumber", r->F.d[i].hex) ||
        !cJSON_AddStringToObject(msg, "certificateOwnershipToken", tok->valuestring) ||
        !cJSON_AddItemToObject(msg, "parameters", params))
        abort();
    d->state = D_REGISTER;
    dev_send(r, i, msg);
}

/* Key and certificate to flash: erase the region, program both (DER),
 * each with a 2-byte length, then read back and compare. */
static int dev_store(csr_run *r, csrdev *d)
{
    static unsigned char buf[2 * CSR_SECTOR], back[2 * CSR_SECTOR];
    unsigned char kder[256];
    const otk_port *port = &r->pool.port[d->slot];
    int kn = mbedtls_pk_write_key_der(&d->key, kder, sizeof kder);
    size_t len, s;
    if (kn <= 0 || 4 + (size_t)kn + d->cert_len > sizeof buf)
        return -1;
    buf[0] = (unsigned char)(kn >> 8), buf[1] = (unsigned char)kn;
    memcpy(buf + 2, kder + sizeof kder - kn, (size_t)kn);
    buf[2 + kn] = (unsigned char)(d->cert_len >> 8), buf[3 + kn] = (unsigned char)d->cert_len;
    memcpy(buf + 4 + kn, d->cert_der, d->cert_len);
    len = 4 + (size_t)kn + d->cert_len;
    memset(buf + len, 0xFF, sizeof buf - len);
    len = (len + CSR_PROG - 1) / CSR_PROG * CSR_PROG;
    mbedtls_platform_zeroize(kder, sizeof kder);
    for (s = 0; s < len; s += CSR_SECTOR)
        if (port->flash_erase(port->ctx, (uint32_t)s) != 0)
            return -1;
    if (port->flash_prog(port->ctx, 0, buf, (uint32_t)len) != 0 ||
        port->flash_read(port->ctx, 0, back, (uint32_t)len) != 0 || memcmp(buf, back, len) != 0)
        return -1;
    mbedtls_platform_zeroize(buf, sizeof buf);
    return 0;
}

static void dev_registered(csr_run *r, uint32_t i, cJSON *root)
{
    csrdev *d = &r->d[i];
    cJSON *thing = cJSON_GetObjectItemCaseSensitive(root, "thingName");
    if (!cJSON_IsString(thing) || strcmp(thing->valuestring, r->F.d[i].hex) != 0) {
        dev_fail(r, i, "bad RegisterThing response");
        return;
    }
    if (dev_store(r, d) != 0) {
        dev_fail(r, i, "flash");
        return;
    }
    dev_release(r, d);
    d->state = D_DONE;
    r->ph->done++;
    fl_phase_latency(r->ph, (double)(fl_now_us() - d->t0_us) / 1000.0);
    if (r->inflight)
        r->inflight--;
}

static void dev_msg(void *s, uint32_t i, const uint8_t *p, size_t n)
{
    csr_run *r = s;
    csrdev *d = &r->d[i];
    cJSON *root;
    if (d->state != D_CREATE && d->state != D_REGISTER)
        return;
    root = cJSON_ParseWithLength((const char *)p, n);
    if (root == NULL) {
        dev_fail(r, i, "response is not JSON");
        return;
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "errorCode"))
        dev_fail(r, i, "request rejected");
    else if (d->state == D_CREATE && cJSON_GetObjectItemCaseSensitive(root, "certificatePem"))
        dev_created(r, i, root);
    else if (d->state == D_REGISTER && cJSON_GetObjectItemCaseSensitive(root, "thingName"))
        dev_registered(r, i, root);
    /* Anything else is a late answer to a repeated request: ignored. */
    cJSON_Delete(root);
}

static void dev_start_some(csr_run *r)
{
    uint32_t scanned, started = 0;
    /* All devices share one thread: a few key generations per loop turn,
     * so that the messages of devices already started are not held up. */
    for (scanned = 0; r->idle && r->inflight < r->pool.n && scanned < r->F.n && started < CSR_STARTS_PER_TURN;
         scanned++) {
        uint32_t i = r->cursor;
        csrdev *d = &r->d[i];
        r->cursor = (r->cursor + 1) % r->F.n;
        if (d->state != D_IDLE || !r->F.d[i].online)
            continue;
        if ((d->slot = bl_pool_take(&r->pool)) < 0)
            return;
        d->t0_us = fl_now_us();
        r->idle--;
        r->inflight++;
        started++;
        dev_start(r, i);
    }
}

static void dev_retry(csr_run *r)
{
    uint64_t now = fl_now_us();
    uint32_t i;
    for (i = 0; i < r->F.n; i++) {
        csrdev *d = &r->d[i];
        if ((d->state == D_CREATE || d->state == D_REGISTER) && d->request &&
            now - d->wait_since_us >= CSR_WAIT_US && r->F.d[i].online) {
            d->wait_since_us = now;
            (void)bl_send_up(&r->F, i, d->request, d->request_len);
        }
    }
}

/* ---- server side ---- */

static void srv_reply(csr_run *r, uint32_t i, cJSON *msg)
{
    char *s = cJSON_PrintUnformatted(msg);
    cJSON_Delete(msg);
    if (s == NULL)
        abort();
    (void)bl_send_down(&r->F, i, s, strlen(s));
    free(s);
}

static void srv_reject(csr_run *r, uint32_t i, int code, const char *error, const char *why)
{
    cJSON *m = cJSON_CreateObject();
    r->srv_refused++;
    if (!m || !cJSON_AddNumberToObject(m, "statusCode", code) || !cJSON_AddStringToObject(m, "errorCode", error) ||
        !cJSON_AddStringToObject(m, "errorMessage", why))
        abort();
    srv_reply(r, i, m);
}

static char *b64(const uint8_t *p, size_t n)
{
    char *s = malloc(4 * ((n + 2) / 3) + 1);
    if (s == NULL)
        abort();
    EVP_EncodeBlock((unsigned char *)s, p, (int)n);
    return s;
}

/* Decodes base64 into out (cap bytes); returns the length or -1. */
static int unb64(const char *s, uint8_t *out, size_t cap)
{
    size_t n = strlen(s);
    int len;
    if (n == 0 || n % 4 || n / 4 * 3 > cap)
        return -1;
    len = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    if (len < 0)
        return -1;
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    return len - (s[n - 1] == '=') - (s[n - 2] == '=');
}

/* The ownership token: AES-256-GCM over {"certificateId","clientId",
 * "templateName","iat","exp"}, in AWS's envelope. */
static char *token_make(csr_run *r, const char *cert_id, const char *client)
{
    char plain[256], *cipher_b64, *env_json, *tok;
    uint8_t blob[12 + sizeof plain + 16];
    long now = (long)time(NULL);
    /* What the record holds is ours to choose; its size matches AWS's
     * sealed record (233 bytes in a published example). */
    int n = snprintf(plain, sizeof plain,
                     "{\"certificateId\":\"%s\",\"clientId\":\"%s\",\"templateName\":\"%s\",\"iat\":%ld,"
                     "\"exp\":%ld}",
                     cert_id, client, CSR_TEMPLATE, now, now + CSR_TOKEN_TTL_S);
    int len = 0, fin = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (c == NULL || n <= 0 || (size_t)n >= sizeof plain || RAND_bytes(blob, 12) != 1 ||
        EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, bl_fault("csr-token") ? r->rogue : r->token_key, blob) != 1 ||
        EVP_EncryptUpdate(c, blob + 12, &len, (const uint8_t *)plain, n) != 1 ||
        EVP_EncryptFinal_ex(c, blob + 12 + len, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, blob + 12 + len + fin) != 1)
        abort();
    EVP_CIPHER_CTX_free(c);
    cipher_b64 = b64(blob, (size_t)(12 + len + fin + 16));
    env_json = malloc(strlen(cipher_b64) + 64);
    if (env_json == NULL)
        abort();
    sprintf(env_json, "{\"version\":\"20191023\",\"cipher\":\"%s\"}", cipher_b64);
    tok = b64((const uint8_t *)env_json, strlen(env_json));
    free(cipher_b64);
    free(env_json);
    return tok;
}

/* Opens a token; 0 when it is sealed by us, unexpired, for this client
 * and names the certificate last issued to it. */
static int token_check(csr_run *r, uint32_t i, const char *tok)
{
    uint8_t env_json[1024], blob[512], plain[512];
    cJSON *e = NULL, *cipher, *p = NULL, *id, *client, *exp;
    int n, bn, len = 0, fin = 0, rc = -1;
    EVP_CIPHER_CTX *c = NULL;
    if ((n = unb64(tok, env_json, sizeof env_json - 1)) < 0)
        return -1;
    e = cJSON_ParseWithLength((const char *)env_json, (size_t)n);
    cipher = cJSON_GetObjectItemCaseSensitive(e, "cipher");
    if (!cJSON_IsString(cipher) || (bn = unb64(cipher->valuestring, blob, sizeof blob)) < 12 + 16 + 2)
        goto out;
    c = EVP_CIPHER_CTX_new();
    if (c == NULL || EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, r->token_key, blob) != 1 ||
        EVP_DecryptUpdate(c, plain, &len, blob + 12, bn - 28) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, blob + bn - 16) != 1 ||
        EVP_DecryptFinal_ex(c, plain + len, &fin) != 1)
        goto out;
    p = cJSON_ParseWithLength((const char *)plain, (size_t)(len + fin));
    id = cJSON_GetObjectItemCaseSensitive(p, "certificateId");
    client = cJSON_GetObjectItemCaseSensitive(p, "clientId");
    exp = cJSON_GetObjectItemCaseSensitive(p, "exp");
    if (cJSON_IsString(id) && cJSON_IsString(client) && cJSON_IsNumber(exp) &&
        strcmp(client->valuestring, r->F.d[i].hex) == 0 && strcmp(id->valuestring, r->issued[i]) == 0 &&
        exp->valuedouble >= (double)time(NULL))
        rc = 0;
out:
    EVP_CIPHER_CTX_free(c);
    cJSON_Delete(p);
    cJSON_Delete(e);
    return rc;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return 0;
    ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* A certificate for key/subject, signed by the CA (or self-signed when
 * issuer is NULL: the CA itself). */
static X509 *issue(csr_run *r, EVP_PKEY *key, const X509_NAME *subject, int ca)
{
    X509 *x = X509_new();
    uint8_t serial[20];
    BIGNUM *bn = NULL;
    ASN1_TIME *until = NULL;
    int ok;
    if (x == NULL || RAND_bytes(serial, sizeof serial) != 1)
        abort();
    serial[0] &= 0x7f; /* a positive INTEGER of 20 bytes at most (RFC 5280) */
    serial[0] |= 0x40;
    bn = BN_bin2bn(serial, sizeof serial, NULL);
    until = ASN1_TIME_new();
    ok = bn && until && X509_set_version(x, 2) && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) &&
         X509_set_subject_name(x, subject) &&
         X509_set_issuer_name(x, ca ? subject : X509_get_subject_name(r->ca)) &&
         X509_gmtime_adj(X509_getm_notBefore(x), 0) && ASN1_TIME_set_string(until, "20491231235959Z") &&
         X509_set1_notAfter(x, until) && X509_set_pubkey(x, key) &&
         add_ext(x, ca ? x : r->ca, NID_subject_key_identifier, "hash") &&
         add_ext(x, ca ? x : r->ca, NID_authority_key_identifier, "keyid:always") &&
         add_ext(x, ca ? x : r->ca, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE") &&
         add_ext(x, ca ? x : r->ca, NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature") &&
         X509_sign(x, !ca && r->rogue_key ? r->rogue_key : r->ca_key, EVP_sha256()) > 0;
    BN_free(bn);
    ASN1_TIME_free(until);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* CreateCertificateFromCsr. */
static void srv_create(csr_run *r, uint32_t i, const char *pem)
{
    BIO *in = BIO_new_mem_buf(pem, -1), *out = NULL;
    X509_REQ *req = in ? PEM_read_bio_X509_REQ(in, NULL, NULL, NULL) : NULL;
    EVP_PKEY *key = req ? X509_REQ_get0_pubkey(req) : NULL;
    X509 *cert = NULL;
    uint8_t h[32];
    unsigned hl = 0;
    char cn[64], group[32], *tok, *cpem, *copy;
    long plen;
    cJSON *m;
    /* Only P-256 keys, a valid self-signature, and the CN is the client. */
    if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
        EVP_PKEY_get_group_name(key, group, sizeof group, NULL) != 1 || strcmp(group, "prime256v1") != 0 ||
        X509_REQ_verify(req, key) != 1 ||
        X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof cn) <= 0 ||
        strcmp(cn, r->F.d[i].hex) != 0) {
        srv_reject(r, i, 400, "InvalidCsr", "the CSR is not valid");
        goto out;
    }
    if ((cert = issue(r, key, X509_REQ_get_subject_name(req), 0)) == NULL ||
        !X509_digest(cert, EVP_sha256(), h, &hl) || (out = BIO_new(BIO_s_mem())) == NULL ||
        !PEM_write_bio_X509(out, cert)) {
        srv_reject(r, i, 500, "InternalFailure", "cannot issue the certificate");
        goto out;
    }
    hex32(h, r->issued[i]);
    plen = BIO_get_mem_data(out, &cpem);
    if (plen <= 0 || (copy = malloc((size_t)plen + 1)) == NULL)
        abort();
    memcpy(copy, cpem, (size_t)plen);
    copy[plen] = '\0';
    tok = token_make(r, r->issued[i], r->F.d[i].hex);
    m = cJSON_CreateObject();
    if (!m || !cJSON_AddStringToObject(m, "certificateId", r->issued[i]) ||
        !cJSON_AddStringToObject(m, "certificatePem", copy) ||
        !cJSON_AddStringToObject(m, "certificateOwnershipToken", tok))
        abort();
    free(copy);
    free(tok);
    srv_reply(r, i, m);
out:
    X509_free(cert);
    X509_REQ_free(req);
    BIO_free(in);
    BIO_free(out);
}

/* RegisterThing. */
static void srv_register(csr_run *r, uint32_t i, cJSON *root)
{
    cJSON *tok = cJSON_GetObjectItemCaseSensitive(root, "certificateOwnershipToken");
    cJSON *sn = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "parameters"), "SerialNumber");
    cJSON *m;
    if (!cJSON_IsString(tok) || token_check(r, i, tok->valuestring) != 0) {
        srv_reject(r, i, 400, "InvalidCertificateOwnershipToken", "the token is not valid");
        return;
    }
    if (!cJSON_IsString(sn) || strcmp(sn->valuestring, r->F.d[i].hex) != 0) {
        srv_reject(r, i, 400, "InvalidParameters", "SerialNumber does not match the client");
        return;
    }
    m = cJSON_CreateObject();
    if (!m || !cJSON_AddItemToObject(m, "deviceConfiguration", cJSON_CreateObject()) ||
        !cJSON_AddStringToObject(m, "thingName", r->F.d[i].hex))
        abort();
    srv_reply(r, i, m);
}

static void srv_msg(void *s, uint32_t i, const uint8_t *p, size_t n)
{
    csr_run *r = s;
    cJSON *root = cJSON_ParseWithLength((const char *)p, n);
    cJSON *csr = cJSON_GetObjectItemCaseSensitive(root, "certificateSigningRequest");
    if (cJSON_IsString(csr))
        srv_create(r, i, csr->valuestring);
    else if (cJSON_GetObjectItemCaseSensitive(root, "certificateOwnershipToken"))
        srv_register(r, i, root);
    else
        srv_reject(r, i, 400, "InvalidPayload", "unknown request");
    cJSON_Delete(root);
}

static const bl_ops csr_ops = {dev_msg, srv_msg};

/* The CA (OpenSSL) and its certificate, provisioned on the devices (mbedTLS). */
static int make_ca(csr_run *r)
{
    X509_NAME *name = X509_NAME_new();
    unsigned char *der = NULL;
    int len, ok;
    /* One OU RDN nearly as long as AWS's issuer ("Amazon Web Services
     * O=Amazon.com Inc. L=Seattle ST=Washington C=US", 66 characters, over
     * the 64 that OpenSSL takes for an OU). */
    r->ca_key = EVP_EC_gen("P-256");
    ok = name && r->ca_key &&
         X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_ASC,
                                    (const unsigned char *)"Fleet Devices O=Example Fleet Inc. "
                                                           "L=Seattle ST=Washington C=US",
                                    -1, -1, 0) &&
         (r->ca = issue(r, r->ca_key, name, 1)) != NULL && RAND_bytes(r->token_key, sizeof r->token_key) == 1 &&
         RAND_bytes(r->rogue, sizeof r->rogue) == 1 &&
         (!bl_fault("csr-ca") || (r->rogue_key = EVP_EC_gen("P-256")) != NULL);
    X509_NAME_free(name);
    if (!ok || (len = i2d_X509(r->ca, &der)) <= 0) {
        fprintf(stderr, "fleet: x509-csr: cannot make the CA\n");
        ERR_print_errors_fp(stderr);
        return -1;
    }
    ok = mbedtls_x509_crt_parse_der(&r->trust, der, (size_t)len) == 0;
    OPENSSL_free(der);
    if (!ok)
        fprintf(stderr, "fleet: x509-csr: mbedTLS does not take the CA certificate\n");
    return ok ? 0 : -1;
}

static void csr_free(csr_run *r)
{
    uint32_t i;
    if (r->d)
        for (i = 0; i < r->F.n; i++)
            dev_release(r, &r->d[i]);
    if (r->F.d)
        bl_fleet_free(&r->F);
    bl_pool_free(&r->pool);
    free(r->d);
    free(r->issued);
    X509_free(r->ca);
    EVP_PKEY_free(r->ca_key);
    EVP_PKEY_free(r->rogue_key);
    OPENSSL_cleanse(r->token_key, sizeof r->token_key);
    mbedtls_x509_crt_free(&r->trust);
    mbedtls_ctr_drbg_free(&r->drbg);
    mbedtls_entropy_free(&r->entropy);
}

int fl_csr_run(fl_env *env, uint32_t first, uint32_t n, fl_phase *out)
{
    csr_run r;
    uint32_t i;
    uint64_t t_start, deadline, last_retry = 0, last_note = 0;
    static const char pers[] = "otakey-fleet x509-csr devices";
    memset(&r, 0, sizeof r);
    mbedtls_x509_crt_init(&r.trust);
    mbedtls_entropy_init(&r.entropy);
    mbedtls_ctr_drbg_init(&r.drbg);
    r.env = env;
    /* One flash region per device in flight; devices waiting hold none. */
    r.d = calloc(n ? n : 1, sizeof *r.d);
    r.issued = calloc(n ? n : 1, sizeof *r.issued);
    if (!r.d || !r.issued)
        abort();
    bl_pool_init(&r.pool, env->window < n ? env->window : n, 2 * CSR_SECTOR, CSR_SECTOR,
                 CSR_PROG, env->crypto);
    for (i = 0; i < n; i++) {
        r.d[i].slot = -1;
        mbedtls_pk_init(&r.d[i].key);
    }
    if (mbedtls_ctr_drbg_seed(&r.drbg, mbedtls_entropy_func, &r.entropy, (const unsigned char *)pers,
                              sizeof pers - 1) != 0 ||
        make_ca(&r) != 0) {
        fprintf(stderr, "fleet: x509-csr: cannot set up\n");
        csr_free(&r);
        return -1;
    }
    bl_fleet_init(&r.F, env, first, n, &csr_ops, &r, "csr");
    if (bl_fleet_connect(&r.F) != 0) {
        csr_free(&r);
        return -1;
    }

    fl_phase_begin(out, "x509-csr", "re-key", n);
    r.ph = out;
    r.idle = n;
    bl_fleet_bytes(&r.F, &out->bytes, -1);
    r.F.timing = 1;
    t_start = fl_now_us();
    deadline = t_start + (uint64_t)env->phase_timeout_s * 1000000u;
    while (out->done + r.dev_failed < n && fl_now_us() < deadline) {
        uint64_t now = fl_now_us();
        double t = fl_thread_cpu();
        dev_start_some(&r);
        if (now - last_retry >= 200000)
            dev_retry(&r);
        r.F.dev_cpu_s += fl_thread_cpu() - t;
        if (now - last_retry >= 200000) {
            last_retry = now;
            bl_fleet_tick(&r.F);
        }
        fl_loop_run(env->loop, 5);
        if (env->verbose && now - last_note >= 2000000) {
            last_note = now;
            fprintf(stderr, "fleet: x509-csr: %llu/%u done, %u in flight\n", (unsigned long long)out->done,
                    n, r.inflight);
        }
    }
    r.F.timing = 0;
    out->wall_s = (double)(fl_now_us() - t_start) / 1e6;
    bl_fleet_bytes(&r.F, &out->bytes, +1);
    out->server_cpu_us = r.F.srv_cpu_s * 1e6 / (double)(out->done ? out->done : 1);
    out->device_cpu_us = r.F.dev_cpu_s * 1e6 / (double)(out->done ? out->done : 1);
    if (r.srv_refused && env->verbose)
        fprintf(stderr, "fleet: x509-csr: the server refused %llu requests\n",
                (unsigned long long)r.srv_refused);
    csr_free(&r);
    return 0;
}
