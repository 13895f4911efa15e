/*
 * jansson helpers shared by the glue and the engine.
 */
#include "bff_core.h"

static apr_status_t json_cleanup(void *data)
{
    json_decref((json_t *)data);
    return APR_SUCCESS;
}

json_t *bff_json_pool_own(json_t *v, apr_pool_t *p)
{
    /* NULL is tolerated so callers can write
     * bff_json_pool_own(json_loadb(...), p) and test the result once. */
    if (v) {
        apr_pool_cleanup_register(p, v, json_cleanup, apr_pool_cleanup_null);
    }
    return v;
}

int bff_json_depth(const char *buf, size_t len)
{
    /* jansson's parser recurses per nesting level and its own limit
     * (JSON_PARSER_MAX_DEPTH) is a compile-time constant, so untrusted
     * bodies are measured first. Only bytes are looked at: brackets
     * inside strings do not count, and a backslash always hides the next
     * byte, which is all that is needed to find the end of a string. */
    int depth = 0, max = 0, in_str = 0;
    size_t i;

    if (!buf) {
        return 0;
    }
    for (i = 0; i < len; ++i) {
        char c = buf[i];
        if (in_str) {
            if (c == '\\') {
                ++i;
            }
            else if (c == '"') {
                in_str = 0;
            }
            continue;
        }
        switch (c) {
        case '"':
            in_str = 1;
            break;
        case '[':
        case '{':
            if (++depth > max) {
                max = depth;
            }
            break;
        case ']':
        case '}':
            /* Unbalanced closers are the parser's problem; never go
             * negative so "]]]][[" still reports its real depth. */
            if (depth > 0) {
                --depth;
            }
            break;
        default:
            break;
        }
    }
    return max;
}
