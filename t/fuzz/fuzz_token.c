/*
 * libFuzzer target for the token sources (lib/bff_token.c), whose inputs
 * are a client's Cookie header and query string:
 *
 *   data[0] % 4 == 0  the rest is a Cookie header, the cookie "t" taken;
 *   data[0] % 4 == 1  the rest is a query string, the parameter "t" taken;
 *   data[0] % 4 == 2  the rest is a BFFTokenSource word;
 *   data[0] % 4 == 3  the rest is an Authorization value.
 *
 * What is left after a cookie or a parameter was taken never holds it
 * again (taking it twice finds nothing and changes nothing), and a token
 * from a query string holds no control character: abort otherwise.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "bff_token.h"

static apr_pool_t *gp;

static void same(const char *a, const char *b)
{
    if ((a == NULL) != (b == NULL) || (a && strcmp(a, b))) {
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    apr_initialize();
    apr_pool_create(&gp, NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    const char *in, *v, *rest, *rest2;
    bff_token_src_t src;

    if (size < 1) {
        return 0;
    }
    apr_pool_create(&p, gp);
    in = apr_pstrmemdup(p, (const char *)data + 1, size - 1);
    switch (data[0] % 4) {
    case 0:
        bff_token_cookie(&rest, in, "t", p);
        if (bff_token_cookie(&rest2, rest, "t", p)) {
            abort();
        }
        same(rest, rest2);
        break;
    case 1:
        v = bff_token_query(&rest, in, "t", p);
        for (; v && *v; v++) {
            if ((unsigned char)*v < 0x20 || *v == 0x7f) {
                abort();
            }
        }
        if (bff_token_query(&rest2, rest, "t", p)) {
            abort();
        }
        same(rest, rest2);
        break;
    case 2:
        if (!bff_token_source_parse(&src, in, p)
            && src.kind != BFF_TOKEN_BEARER && (!src.name || !*src.name)) {
            abort();
        }
        break;
    default:
        v = bff_token_bearer(in);
        if (v && (!*v || *v == ' ')) {
            abort();
        }
        break;
    }
    apr_pool_destroy(p);
    return 0;
}
