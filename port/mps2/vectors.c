/*
 * The crypto known-answer vectors (the .txt files of tests/vectors) built into the
 * board's test_crypto image: the assembler includes each file as it is
 * (.incbin, no copy in the repository), NUL-terminated, and
 * otk_board_vectors() finds one by name. A board has no file system;
 * test_crypto reads the text through fmemopen() as it reads the files on
 * the host. OTK_VECTORS_DIR is the absolute path of tests/vectors.
 */
#include <stddef.h>
#include <string.h>

#define OTK_STR2(x) #x
#define OTK_STR(x) OTK_STR2(x)

#define OTK_VECTOR(sym, file)                                                             \
    __asm__(".section .rodata." #sym ",\"a\"\n"                                           \
            ".global " #sym "\n" #sym ":\n"                                                \
            ".incbin \"" OTK_STR(OTK_VECTORS_DIR) "/" file "\"\n"                          \
            ".byte 0\n"                                                                    \
            ".global " #sym "_end\n" #sym "_end:\n"                                        \
            ".previous\n");                                                                \
    extern const char sym[], sym##_end[]

OTK_VECTOR(otk_vec_hmac, "hmac_sha256.txt");
OTK_VECTOR(otk_vec_hkdf, "hkdf_sha256.txt");
OTK_VECTOR(otk_vec_ccm, "aes128_ccm_n13_t16.txt");
OTK_VECTOR(otk_vec_ecdh, "ecdh_p256.txt");
OTK_VECTOR(otk_vec_ecdsa, "ecdsa_p256_sha256.txt");

const char *otk_board_vectors(const char *name, size_t *len);

const char *otk_board_vectors(const char *name, size_t *len)
{
    static const struct {
        const char *name, *start, *end;
    } v[] = {
        {"hmac_sha256.txt", otk_vec_hmac, otk_vec_hmac_end},
        {"hkdf_sha256.txt", otk_vec_hkdf, otk_vec_hkdf_end},
        {"aes128_ccm_n13_t16.txt", otk_vec_ccm, otk_vec_ccm_end},
        {"ecdh_p256.txt", otk_vec_ecdh, otk_vec_ecdh_end},
        {"ecdsa_p256_sha256.txt", otk_vec_ecdsa, otk_vec_ecdsa_end},
    };
    size_t i;
    for (i = 0; i < sizeof v / sizeof v[0]; i++)
        if (strcmp(v[i].name, name) == 0) {
            *len = (size_t)(v[i].end - v[i].start) - 1u; /* the text, without its NUL */
            return v[i].start;
        }
    return NULL;
}
