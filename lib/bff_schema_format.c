/*
 * JSON Schema "format" checks (draft-07 section 7.3, and uuid).
 *
 * Each check reads a string of known length (it may contain any UTF-8) and
 * says whether it has the format's syntax; nothing is looked up (no DNS,
 * no scheme registry).
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <apr_lib.h>

#include "bff_schema.h"

typedef int format_fn(const char *s, size_t n);

static int digits(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; ++i) {
        if (!apr_isdigit(s[i])) {
            return 0;
        }
    }
    return 1;
}

static int num2(const char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

/* RFC 3339 full-date */
static int is_date(const char *s, size_t n)
{
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int y, m, d, leap;

    if (n != 10 || s[4] != '-' || s[7] != '-' || !digits(s, 4)
        || !digits(s + 5, 2) || !digits(s + 8, 2)) {
        return 0;
    }
    y = num2(s) * 100 + num2(s + 2);
    m = num2(s + 5);
    d = num2(s + 8);
    if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1]) {
        return 0;
    }
    leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return !(m == 2 && d == 29 && !leap);
}

/* RFC 3339 full-time: partial-time and a Z or numeric offset. A leap
 * second (:60) is only valid at 23:59 UTC. */
static int is_time(const char *s, size_t n)
{
    int h, m, sec, oh = 0, om = 0, sign = 0;
    size_t i = 8;

    if (n < 9 || s[2] != ':' || s[5] != ':' || !digits(s, 2)
        || !digits(s + 3, 2) || !digits(s + 6, 2)) {
        return 0;
    }
    h = num2(s);
    m = num2(s + 3);
    sec = num2(s + 6);
    if (i < n && s[i] == '.') {
        size_t start = ++i;
        while (i < n && apr_isdigit(s[i])) {
            ++i;
        }
        if (i == start) {
            return 0;
        }
    }
    if (i + 1 == n && (s[i] == 'Z' || s[i] == 'z')) {
        sign = 0;
    }
    else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':'
             && digits(s + i + 1, 2) && digits(s + i + 4, 2)) {
        sign = s[i] == '+' ? 1 : -1;
        oh = num2(s + i + 1);
        om = num2(s + i + 4);
    }
    else {
        return 0;
    }
    if (h > 23 || m > 59 || sec > 60 || oh > 23 || om > 59) {
        return 0;
    }
    if (sec == 60) {
        int utc = ((h * 60 + m - sign * (oh * 60 + om)) % 1440 + 1440) % 1440;
        return utc == 23 * 60 + 59;
    }
    return 1;
}

static int is_date_time(const char *s, size_t n)
{
    return n > 11 && (s[10] == 'T' || s[10] == 't') && is_date(s, 10)
           && is_time(s + 11, n - 11);
}

/* local@domain, neither part empty, no spaces or controls; ASCII only
 * unless idn */
static int email(const char *s, size_t n, int idn)
{
    size_t i, at = n;

    for (i = 0; i < n; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == 0x7f || (c >= 0x80 && !idn)) {
            return 0;
        }
        if (c == '@') {
            if (at != n) {
                return 0;
            }
            at = i;
        }
    }
    return at > 0 && at < n - 1;
}

static int is_email(const char *s, size_t n)
{
    return email(s, n, 0);
}

static int is_idn_email(const char *s, size_t n)
{
    return email(s, n, 1);
}

/* RFC 1123 host names: labels of letters, digits and inner hyphens, 1-63
 * octets, 253 in all */
static int is_hostname(const char *s, size_t n)
{
    size_t i, label = 0;

    if (n == 0 || n > 253) {
        return 0;
    }
    for (i = 0; i <= n; ++i) {
        if (i == n || s[i] == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-') {
                return 0;
            }
            label = 0;
        }
        else if (apr_isalnum(s[i]) || (s[i] == '-' && label > 0)) {
            ++label;
        }
        else {
            return 0;
        }
    }
    return 1;
}

/* Next code point of valid UTF-8 (jansson validated it) */
static unsigned long next_cp(const char *s, size_t n, size_t *i)
{
    unsigned char c = (unsigned char)s[*i];
    unsigned long cp;
    int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;

    cp = more ? (c & (0x3F >> more)) : c;
    ++*i;
    while (more-- > 0 && *i < n) {
        cp = (cp << 6) | ((unsigned char)s[(*i)++] & 0x3F);
    }
    return cp;
}

/* Internationalized host names (RFC 5890): what can be told without the
 * IDNA tables. ASCII labels as for hostname; a label with other characters
 * must not start with a combining mark, must not contain the Hangul tone
 * marks U+302E/U+302F (disallowed by RFC 5892), and must fit 63 octets
 * once encoded, of which "xn--" and one octet per code point are a lower
 * bound. */
static int is_idn_hostname(const char *s, size_t n)
{
    size_t i = 0;

    if (n == 0) {
        return 0;
    }
    for (;;) {
        size_t cps = 0, ascii = 0;
        int wide = 0, sep = 0;
        unsigned long cp, last = 0;

        while (i < n) {
            cp = next_cp(s, n, &i);
            if (cp == '.' || cp == 0x3002 || cp == 0xFF0E || cp == 0xFF61) {
                sep = 1;
                break;
            }
            if (cp < 0x80) {
                if (!apr_isalnum((int)cp) && !(cp == '-' && cps > 0)) {
                    return 0;
                }
                ++ascii;
            }
            else {
                wide = 1;
                if (cp == 0x302E || cp == 0x302F
                    || (cps == 0 && ((cp >= 0x300 && cp <= 0x36F)
                                     || (cp >= 0x1AB0 && cp <= 0x1AFF)
                                     || (cp >= 0x20D0 && cp <= 0x20FF)))) {
                    return 0;
                }
            }
            ++cps;
            last = cp;
        }
        if (cps == 0 || last == '-'
            || (wide ? 4 + cps + (ascii > 0) : cps) > 63) {
            return 0;
        }
        if (!sep) {
            return 1;
        }
    }
}

/* inet_pton wants a C string */
static int ip_addr(int af, const char *s, size_t n)
{
    char buf[INET6_ADDRSTRLEN + 1];
    unsigned char addr[sizeof(struct in6_addr)];

    if (n >= sizeof(buf)) {
        return 0;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    return inet_pton(af, buf, addr) == 1;
}

static int is_ipv4(const char *s, size_t n)
{
    return ip_addr(AF_INET, s, n);
}

static int is_ipv6(const char *s, size_t n)
{
    return ip_addr(AF_INET6, s, n);
}

/* RFC 3986 (and RFC 3987 when iri: any non-ASCII character allowed where
 * unreserved ones are). absolute: a scheme is required. */
static int uri_like(const char *s, size_t n, int absolute, int iri)
{
    size_t i = 0, scheme = 0, auth, auth_end, host, at;
    int frag = 0;

    /* characters: unreserved, reserved, %HH; no spaces, controls, quotes,
     * <>\^`{|}; '#' only once */
    for (i = 0; i < n; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            if (!iri) {
                return 0;
            }
        }
        else if (c == '%') {
            if (i + 2 >= n || !apr_isxdigit(s[i + 1])
                || !apr_isxdigit(s[i + 2])) {
                return 0;
            }
        }
        else if (c == '#') {
            if (frag++) {
                return 0;
            }
        }
        else if (c <= ' ' || c == 0x7f || strchr("\"<>\\^`{|}", c)) {
            return 0;
        }
    }
    /* scheme */
    if (n && apr_isalpha(s[0])) {
        for (i = 1; i < n && (apr_isalnum(s[i]) || strchr("+-.", s[i])); ++i) {
        }
        if (i < n && s[i] == ':') {
            scheme = i + 1;
        }
    }
    if (!scheme) {
        size_t seg = strcspn(s, "/?#");
        if (absolute || memchr(s, ':', seg < n ? seg : n)) {
            return 0;   /* a relative path's first segment has no ':' */
        }
    }
    /* authority */
    auth = scheme;
    if (n - auth >= 2 && s[auth] == '/' && s[auth + 1] == '/') {
        auth += 2;
        for (auth_end = auth; auth_end < n && !strchr("/?#", s[auth_end]);
             ++auth_end) {
        }
        host = auth;
        for (at = auth; at < auth_end; ++at) {
            if (s[at] == '@') {
                host = at + 1;
            }
        }
        for (i = auth; i + 1 < host; ++i) {
            if (s[i] == '[' || s[i] == ']') {
                return 0;
            }
        }
        if (host < auth_end && s[host] == '[') {
            const char *close = memchr(s + host, ']', auth_end - host);
            if (!close || !ip_addr(AF_INET6, s + host + 1,
                                   (size_t)(close - s) - host - 1)) {
                return 0;
            }
            i = (size_t)(close - s) + 1;
        }
        else {
            for (i = host; i < auth_end && s[i] != ':'; ++i) {
                if (s[i] == '[' || s[i] == ']') {
                    return 0;
                }
            }
        }
        if (i < auth_end) {
            if (s[i] != ':' || !digits(s + i + 1, auth_end - i - 1)) {
                return 0;
            }
        }
        i = auth_end;
    }
    else {
        i = scheme;
    }
    /* path, query, fragment: brackets only belong to the host */
    for (; i < n; ++i) {
        if (s[i] == '[' || s[i] == ']') {
            return 0;
        }
    }
    return 1;
}

static int is_uri(const char *s, size_t n)
{
    return uri_like(s, n, 1, 0);
}

static int is_uri_reference(const char *s, size_t n)
{
    return uri_like(s, n, 0, 0);
}

static int is_iri(const char *s, size_t n)
{
    return uri_like(s, n, 1, 1);
}

static int is_iri_reference(const char *s, size_t n)
{
    return uri_like(s, n, 0, 1);
}

/* RFC 6570: braces balanced and never nested */
static int is_uri_template(const char *s, size_t n)
{
    size_t i;
    int open = 0;

    for (i = 0; i < n; ++i) {
        if (s[i] == '{') {
            if (open++) {
                return 0;
            }
        }
        else if (s[i] == '}') {
            if (!open--) {
                return 0;
            }
        }
        else if ((unsigned char)s[i] <= ' ') {
            return 0;
        }
    }
    return !open;
}

/* RFC 6901 */
static int is_json_pointer(const char *s, size_t n)
{
    size_t i;

    if (n && s[0] != '/') {
        return 0;
    }
    for (i = 0; i < n; ++i) {
        if (s[i] == '~' && (i + 1 == n || (s[i + 1] != '0' && s[i + 1] != '1'))) {
            return 0;
        }
    }
    return 1;
}

/* draft-handrews-relative-json-pointer: a non-negative integer, then '#'
 * or a JSON Pointer */
static int is_relative_json_pointer(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n && apr_isdigit(s[i])) {
        ++i;
    }
    if (i == 0 || (s[0] == '0' && i > 1)) {
        return 0;
    }
    return (i + 1 == n && s[i] == '#') || is_json_pointer(s + i, n - i);
}

/* A regular expression PCRE2 accepts (ECMA 262 is mostly a subset) */
static int is_regex(const char *s, size_t n)
{
    int rc;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)s, n, PCRE2_UTF, &rc, &off,
                                   NULL);

    pcre2_code_free(re);
    return re != NULL;
}

/* RFC 4122 textual form */
static int is_uuid(const char *s, size_t n)
{
    size_t i;

    if (n != 36) {
        return 0;
    }
    for (i = 0; i < n; ++i) {
        if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-'
                                                     : !apr_isxdigit(s[i])) {
            return 0;
        }
    }
    return 1;
}

static const struct {
    const char *name;
    format_fn *fn;
} formats[] = {
    { "date-time", is_date_time },
    { "date", is_date },
    { "time", is_time },
    { "email", is_email },
    { "idn-email", is_idn_email },
    { "hostname", is_hostname },
    { "idn-hostname", is_idn_hostname },
    { "ipv4", is_ipv4 },
    { "ipv6", is_ipv6 },
    { "uri", is_uri },
    { "uri-reference", is_uri_reference },
    { "iri", is_iri },
    { "iri-reference", is_iri_reference },
    { "uri-template", is_uri_template },
    { "json-pointer", is_json_pointer },
    { "relative-json-pointer", is_relative_json_pointer },
    { "regex", is_regex },
    { "uuid", is_uuid },
};

static format_fn *find(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(formats) / sizeof(formats[0]); ++i) {
        if (!strcmp(formats[i].name, name)) {
            return formats[i].fn;
        }
    }
    return NULL;
}

int bff_schema_format_known(const char *name)
{
    return find(name) != NULL;
}

int bff_schema_format_check(const char *name, const char *value, size_t len)
{
    format_fn *fn = find(name);

    return fn ? fn(value, len) : 1;
}
