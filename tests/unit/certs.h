/* make_cert(): a self-signed P-256 certificate for CN=cn, made with
 * libcrypto and written as PEM to cert (its key to key, unless NULL), for
 * the tests of TLS. A certificate is its own CA. Include after <cmocka.h>. */
#ifndef DCHAT_TESTS_CERTS_H
#define DCHAT_TESTS_CERTS_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>

static void make_cert(const char *cn, const char *cert, const char *key)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    assert_non_null(pk);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pk);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    FILE *f = fopen(cert, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    if (key != NULL) {
        f = fopen(key, "w");
        assert_non_null(f);
        PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
        fclose(f);
    }
    X509_free(x);
    EVP_PKEY_free(pk);
}

#endif
