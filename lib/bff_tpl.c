/*
 * Templates: "http://users:8080/users/{user_id}/orders?ids={orders[].id}"
 * and JSON bodies such as {"ids":{orders[].product_id}}.
 *
 * Compiled once at config time into literal parts and references. URL
 * templates are checked so that request data can only ever land in the
 * path or query: scheme, host and port are fixed by the admin, and every
 * value is percent-encoded down to the unreserved set (minus '.'), so no
 * value can add a segment, a query, a fragment, "..", or a header.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>      /* strncasecmp */

#include <apr_strings.h>
#include <apr_lib.h>

#include "bff_core.h"

typedef struct {
    const char *lit;        /* literal text before ref (may be "") */
    apr_size_t len;
    const bff_ref_t *ref;   /* NULL for the trailing literal */
} tpl_part_t;

struct bff_tpl_t {
    const char *text;
    bff_tpl_mode_e mode;
    apr_array_header_t *parts;  /* tpl_part_t */
    apr_array_header_t *refs;   /* const bff_ref_t * */
};

/* ------------------------------------------------------ string builder -- */

typedef struct {
    char *buf;
    apr_size_t len, cap;
    apr_pool_t *p;
} sbuf_t;

static void sb_init(sbuf_t *sb, apr_size_t cap, apr_pool_t *p)
{
    sb->p = p;
    sb->cap = cap < 64 ? 64 : cap;
    sb->len = 0;
    sb->buf = apr_palloc(p, sb->cap);
}

static void sb_reserve(sbuf_t *sb, apr_size_t more)
{
    if (sb->len + more + 1 > sb->cap) {
        char *nb;
        while (sb->len + more + 1 > sb->cap) {
            sb->cap *= 2;
        }
        nb = apr_palloc(sb->p, sb->cap);
        memcpy(nb, sb->buf, sb->len);
        sb->buf = nb;
    }
}

static void sb_add(sbuf_t *sb, const char *s, apr_size_t n)
{
    sb_reserve(sb, n);
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
}

static const char *sb_str(sbuf_t *sb)
{
    sb_reserve(sb, 0);
    sb->buf[sb->len] = '\0';
    return sb->buf;
}

/* ----------------------------------------------------------- encoding -- */

static int is_unreserved(unsigned char c)
{
    /* RFC 3986 unreserved minus '.', so ".." can never reach a path */
    return apr_isalnum(c) || c == '-' || c == '_' || c == '~';
}

static void sb_encode(sbuf_t *sb, const char *s, apr_size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    apr_size_t i;
    char *o;

    sb_reserve(sb, 3 * n);
    o = sb->buf + sb->len;
    for (i = 0; i < n; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c)) {
            *o++ = (char)c;
        }
        else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 0xf];
        }
    }
    sb->len = (apr_size_t)(o - sb->buf);
}

const char *bff_url_encode(const char *s, apr_pool_t *p)
{
    sbuf_t sb;
    apr_size_t n = strlen(s);

    sb_init(&sb, 3 * n + 1, p);
    sb_encode(&sb, s, n);
    return sb_str(&sb);
}

/* Appends one scalar in URL form, or returns what is wrong with it. */
static const char *url_scalar(sbuf_t *sb, json_t *v)
{
    char num[64];
    size_t n, i;

    switch (json_typeof(v)) {
    case JSON_STRING:
        sb_encode(sb, json_string_value(v), json_string_length(v));
        return NULL;
    case JSON_INTEGER: {
        /* ids in URLs are the common case: json_dumpb's set-up per value
         * costs more than the digits */
        char d[BFF_JSON_INT_MAX];

        sb_add(sb, d, bff_json_int_text(d, json_integer_value(v)));
        return NULL;
    }
    case JSON_REAL:
        /* jansson's own number format ("-1.5", "1e+300"). Digits,
         * '-', '.' and 'e' are safe as they are (a number cannot spell
         * ".."); '+' is encoded because a query would read it as a space. */
        n = json_dumpb(v, num, sizeof(num), JSON_ENCODE_ANY);
        if (n == 0 || n >= sizeof(num)) {
            return "a number that cannot be printed";
        }
        for (i = 0; i < n; ++i) {
            if (num[i] == '+') {
                sb_add(sb, "%2B", 3);
            }
            else {
                sb_add(sb, num + i, 1);
            }
        }
        return NULL;
    case JSON_TRUE:
        sb_add(sb, "true", 4);
        return NULL;
    case JSON_FALSE:
        sb_add(sb, "false", 5);
        return NULL;
    case JSON_NULL:
        return "null";
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    }
    return "of unknown type";
}

static const char *expand_url(sbuf_t *sb, const bff_ref_t *ref, json_t *v,
                              apr_pool_t *p)
{
    const char *what;

    if (json_is_array(v)) {
        size_t i;
        json_t *e;

        json_array_foreach(v, i, e) {
            if (i > 0) {
                sb_add(sb, ",", 1);
            }
            what = url_scalar(sb, e);
            if (what) {
                return apr_psprintf(p, "reference '%s': element %d is %s, "
                                    "which cannot be put in a URL",
                                    bff_ref_text(ref), (int)i, what);
            }
        }
        return NULL;
    }
    what = url_scalar(sb, v);
    if (what) {
        return apr_psprintf(p, "reference '%s' is %s, which cannot be put "
                            "in a URL", bff_ref_text(ref), what);
    }
    return NULL;
}

static const char *expand_json(sbuf_t *sb, const bff_ref_t *ref, json_t *v,
                               apr_pool_t *p)
{
    apr_size_t n;
    const char *js = bff_json_dump(&n, v, p);

    if (n == 0) {
        return apr_psprintf(p, "reference '%s': value cannot be encoded as "
                            "JSON", bff_ref_text(ref));
    }
    sb_add(sb, js, n);
    return NULL;
}

const char *bff_tpl_expand(const char **out, const bff_tpl_t *tpl,
                           bff_tpl_lookup_fn *lookup, void *baton,
                           apr_pool_t *p)
{
    const tpl_part_t *parts = (const tpl_part_t *)tpl->parts->elts;
    sbuf_t sb;
    int i;

    *out = NULL;
    sb_init(&sb, strlen(tpl->text) + 64, p);
    for (i = 0; i < tpl->parts->nelts; ++i) {
        const tpl_part_t *part = &parts[i];
        const char *err;
        json_t *v;

        sb_add(&sb, part->lit, part->len);
        if (!part->ref) {
            continue;
        }
        v = lookup(baton, part->ref);
        if (!v) {
            return apr_psprintf(p, "reference '%s' has no value",
                                bff_ref_text(part->ref));
        }
        err = (tpl->mode == BFF_TPL_URL)
              ? expand_url(&sb, part->ref, v, p)
              : expand_json(&sb, part->ref, v, p);
        if (err) {
            return err;
        }
    }
    *out = sb_str(&sb);
    return NULL;
}

/* ---------------------------------------------------------- compiling -- */

static int is_ref_start(int c)
{
    return apr_isalpha(c) || c == '_';
}

/* Checks the fixed part of a URL template: scheme, authority and that no
 * placeholder comes before the path. first_ph is the offset of the first
 * placeholder, or -1. */
static const char *check_url(const char *text, int first_ph, apr_pool_t *p)
{
    const char *auth, *end, *host, *c;
    apr_size_t i, n = strlen(text);

    if (!strncasecmp(text, "http://", 7)) {
        auth = text + 7;
    }
    else if (!strncasecmp(text, "https://", 8)) {
        auth = text + 8;
    }
    else {
        return apr_psprintf(p, "URL template '%s': must start with http:// "
                            "or https://", text);
    }
    /* Literal bytes must already be a valid URL: nothing would encode
     * them later, and a CR/LF or space would corrupt the request line. */
    for (i = 0; i < n; ++i) {
        unsigned char u = (unsigned char)text[i];
        if (u <= 0x20 || u >= 0x7f) {
            return apr_psprintf(p, "URL template '%s': %s byte 0x%02X at "
                                "offset %d (percent-encode it)", text,
                                u == 0x20 ? "space" : u >= 0x80 ? "non-ASCII"
                                : "control", u, (int)i);
        }
    }

    end = auth + strcspn(auth, "/?#");
    if (first_ph >= 0 && (*end != '/' || text + first_ph < end)) {
        return apr_psprintf(p, "URL template '%s': placeholders are only "
                            "allowed in the path and query, after the first "
                            "'/' following the host (scheme, host and port "
                            "must be fixed)", text);
    }
    /* host is what follows any userinfo, up to an optional :port */
    host = auth;
    for (c = auth; c < end; ++c) {
        if (*c == '@') {
            host = c + 1;
        }
    }
    if (*host == '[') {
        c = host + 1;
        while (c < end && (apr_isxdigit(*c) || *c == ':' || *c == '.')) {
            ++c;
        }
        if (c >= end || *c != ']' || c == host + 1) {
            return apr_psprintf(p, "URL template '%s': invalid IPv6 host",
                                text);
        }
        ++c;
    }
    else {
        c = host;
        while (c < end && (apr_isalnum(*c) || *c == '-' || *c == '.'
                           || *c == '_')) {
            ++c;
        }
        if (c == host) {
            return apr_psprintf(p, "URL template '%s': missing or invalid "
                                "host", text);
        }
    }
    if (c < end) {
        const char *port = c;
        if (*c != ':') {
            return apr_psprintf(p, "URL template '%s': invalid character "
                                "'%c' in host", text, *c);
        }
        ++c;
        while (c < end && apr_isdigit(*c)) {
            ++c;
        }
        if (c != end || c - port < 2 || c - port > 6) {
            return apr_psprintf(p, "URL template '%s': invalid port '%.*s'",
                                text, (int)(end - port - 1), port + 1);
        }
    }
    return NULL;
}

/* A placeholder inside a JSON string ("id-{x}") would splice a quoted
 * value into the string and break it: placeholders stand for whole
 * values. Tracks the string state across literal parts. */
static int json_in_string(const char *s, apr_size_t n, int in_str)
{
    apr_size_t i;

    for (i = 0; i < n; ++i) {
        if (in_str) {
            if (s[i] == '\\') {
                ++i;
            }
            else if (s[i] == '"') {
                in_str = 0;
            }
        }
        else if (s[i] == '"') {
            in_str = 1;
        }
    }
    return in_str;
}

static const char *check_json(const bff_tpl_t *tpl, apr_pool_t *p)
{
    const tpl_part_t *parts = (const tpl_part_t *)tpl->parts->elts;
    json_error_t jerr;
    json_t *j;
    sbuf_t sb;
    int i;

    sb_init(&sb, strlen(tpl->text) + 16, p);
    for (i = 0; i < tpl->parts->nelts; ++i) {
        sb_add(&sb, parts[i].lit, parts[i].len);
        if (parts[i].ref) {
            sb_add(&sb, "null", 4);
        }
    }
    j = json_loadb(sb.buf, sb.len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                   &jerr);
    if (!j) {
        return apr_psprintf(p, "JSON template '%s': not valid JSON (with "
                            "each placeholder replaced by null): %s at "
                            "line %d, column %d", tpl->text, jerr.text,
                            jerr.line, jerr.column);
    }
    json_decref(j);
    return NULL;
}

const char *bff_tpl_compile(bff_tpl_t **out, const char *text,
                            bff_tpl_mode_e mode, apr_pool_t *p)
{
    const char *kind = (mode == BFF_TPL_URL) ? "URL" : "JSON";
    bff_tpl_t *tpl;
    const char *s, *lit, *err;
    int first_ph = -1, in_str = 0;

    *out = NULL;
    if (!text) {
        return apr_psprintf(p, "%s template is missing", kind);
    }
    tpl = apr_pcalloc(p, sizeof(*tpl));
    tpl->text = apr_pstrdup(p, text);
    tpl->mode = mode;
    tpl->parts = apr_array_make(p, 4, sizeof(tpl_part_t));
    tpl->refs = apr_array_make(p, 4, sizeof(const bff_ref_t *));

    lit = s = tpl->text;
    for (;;) {
        tpl_part_t *part;
        const char *close;
        bff_ref_t *ref;

        while (*s && !(s[0] == '{' && is_ref_start((unsigned char)s[1]))) {
            ++s;
        }
        part = apr_array_push(tpl->parts);
        part->lit = lit;
        part->len = (apr_size_t)(s - lit);
        part->ref = NULL;
        if (!*s) {
            break;
        }
        close = strchr(s, '}');
        if (!close) {
            return apr_psprintf(p, "%s template '%s': unterminated "
                                "placeholder at offset %d", kind, text,
                                (int)(s - tpl->text));
        }
        err = bff_ref_parse(&ref, apr_pstrmemdup(p, s + 1,
                                                 (apr_size_t)(close - s - 1)),
                            p);
        if (err) {
            return apr_psprintf(p, "%s template '%s': %s", kind, text, err);
        }
        if (mode == BFF_TPL_JSON) {
            in_str = json_in_string(part->lit, part->len, in_str);
            if (in_str) {
                return apr_psprintf(p, "JSON template '%s': placeholder "
                                    "{%s} is inside a JSON string; a "
                                    "placeholder must stand for a whole "
                                    "value", text, bff_ref_text(ref));
            }
        }
        if (first_ph < 0) {
            first_ph = (int)(s - tpl->text);
        }
        part->ref = ref;
        *(const bff_ref_t **)apr_array_push(tpl->refs) = ref;
        lit = s = close + 1;
    }

    err = (mode == BFF_TPL_URL) ? check_url(tpl->text, first_ph, p)
                                : check_json(tpl, p);
    if (err) {
        return err;
    }
    *out = tpl;
    return NULL;
}

const apr_array_header_t *bff_tpl_refs(const bff_tpl_t *tpl)
{
    return tpl->refs;
}

const char *bff_tpl_text(const bff_tpl_t *tpl)
{
    return tpl->text;
}
