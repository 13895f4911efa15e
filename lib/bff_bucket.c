/*
 * mod_bff: token bucket arithmetic, its Redis script and header values
 * (pure core). See bff_bucket.h.
 */
#include <string.h>

#include <apr_lib.h>
#include <apr_strings.h>

#include <hiredis/hiredis.h>

#include "bff_core.h"
#include "bff_bucket.h"

/* 2^53: integers up to here are exact in a Lua (double) number. */
#define EXACT_MAX (APR_INT64_C(1) << 53)

const char *bff_bucket_conf_check(const bff_bucket_conf_t *c, apr_pool_t *p)
{
    if (c->capacity < 1 || c->rate_tokens < 1 || c->rate_ms < 1) {
        return "rate limit: capacity, tokens and period must be positive";
    }
    if (c->rate_tokens > EXACT_MAX
        || c->capacity > (EXACT_MAX - c->rate_tokens) / c->rate_ms) {
        return apr_psprintf(p, "rate limit: capacity %" APR_INT64_T_FMT
                            " with a period of %" APR_INT64_T_FMT "ms is too "
                            "large (capacity x period must stay below 2^53)",
                            c->capacity, c->rate_ms);
    }
    return NULL;
}

const char *bff_bucket_parse_rate(bff_bucket_conf_t *c, const char *text,
                                  apr_pool_t *p)
{
    const char *slash = text ? strchr(text, '/') : NULL;
    const char *dur, *err, *s;
    apr_int64_t n = 0;
    long ms;
    bff_bucket_conf_t out;

    if (!slash || slash == text) {
        return apr_psprintf(p, "rate '%s': expected N/DURATION, e.g. 100/1m "
                            "or 10/s", text ? text : "");
    }
    for (s = text; s < slash; s++) {
        if (!apr_isdigit(*s) || n > APR_INT64_C(1000000000000)) {
            return apr_psprintf(p, "rate '%s': '%.*s' is not a count", text,
                                (int)(slash - text), text);
        }
        n = n * 10 + (*s - '0');
    }
    dur = slash + 1;
    if (apr_isalpha(*dur)) {
        dur = apr_pstrcat(p, "1", dur, NULL);
    }
    if ((err = bff_parse_duration_ms(&ms, dur, p))) {
        return apr_psprintf(p, "rate '%s': %s", text, err);
    }
    out.capacity = n;
    out.rate_tokens = n;
    out.rate_ms = ms;
    if ((err = bff_bucket_conf_check(&out, p))) {
        return apr_psprintf(p, "rate '%s': %s", text, err);
    }
    *c = out;
    return NULL;
}

void bff_bucket_conf_share(bff_bucket_conf_t *out,
                           const bff_bucket_conf_t *in, int instances)
{
    bff_bucket_conf_t r = *in;
    apr_int64_t k = instances;

    if (k > 1) {
        r.capacity = in->capacity / k;
        if (r.capacity < 1) {
            r.capacity = 1;
        }
        /* N per (P * k) ms is exactly N/k per P. When that would leave
         * the exact range, divide the token count instead (rounded down,
         * at least 1: the fallback never allows more than its share). */
        if (in->rate_ms <= (EXACT_MAX - in->rate_tokens) / k / r.capacity) {
            r.rate_ms = in->rate_ms * k;
        }
        else {
            r.rate_tokens = in->rate_tokens / k;
            if (r.rate_tokens < 1) {
                r.rate_tokens = 1;
            }
        }
    }
    *out = r;
}

/* ceil(a / b) for a >= 0, b > 0 */
static apr_int64_t cdiv(apr_int64_t a, apr_int64_t b)
{
    return a <= 0 ? 0 : (a + b - 1) / b;
}

void bff_bucket_take(bff_bucket_result_t *res, bff_bucket_state_t *st,
                     const bff_bucket_conf_t *c, apr_int64_t now_ms,
                     apr_int64_t cost)
{
    const apr_int64_t full = c->capacity * c->rate_ms;
    apr_int64_t need;

    if (st->last_ms == 0 || st->level < 0 || st->level > full) {
        st->level = full;
        st->last_ms = now_ms;
    }
    else if (now_ms > st->last_ms) {
        apr_int64_t dt = now_ms - st->last_ms;
        /* beyond the time to fill from empty, dt * rate could overflow */
        if (dt >= cdiv(full, c->rate_tokens)) {
            st->level = full;
        }
        else {
            st->level += dt * c->rate_tokens;
            if (st->level > full) {
                st->level = full;
            }
        }
        st->last_ms = now_ms;
    }
    if (cost < 0) {
        cost = 0;
    }
    need = cost > c->capacity ? -1 : cost * c->rate_ms;
    res->limit = c->capacity;
    res->allowed = need >= 0 && st->level >= need;
    if (res->allowed) {
        st->level -= need;
        res->retry_after_ms = 0;
    }
    else {
        res->retry_after_ms = need < 0 ? -1
                              : cdiv(need - st->level, c->rate_tokens);
    }
    res->remaining = st->level / c->rate_ms;
    res->reset_ms = cdiv(full - st->level, c->rate_tokens);
}

/* ------------------------------------------------------------ headers -- */

static apr_int64_t ms_to_s(apr_int64_t ms)
{
    return ms <= 0 ? 0 : (ms + 999) / 1000;
}

/* An sf-string (RFC 8941 section 3.3.3): printable ASCII, with '"' and
 * '\' escaped. */
static const char *sf_string(const char *s, apr_pool_t *p)
{
    apr_size_t i, n = strlen(s), o = 0;
    char *out = apr_palloc(p, 2 * n + 3);

    out[o++] = '"';
    for (i = 0; i < n; i++) {
        char ch = s[i];
        if (ch < 0x20 || ch > 0x7e) {
            ch = '?';
        }
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
        }
        out[o++] = ch;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

void bff_bucket_headers(bff_bucket_headers_t *h, const char *name,
                        const bff_bucket_conf_t *c,
                        const bff_bucket_result_t *r, apr_pool_t *p)
{
    const char *n = sf_string(name ? name : "default", p);
    apr_int64_t window = ms_to_s(cdiv(c->capacity * c->rate_ms,
                                      c->rate_tokens));
    apr_int64_t reset = ms_to_s(r->reset_ms);

    if (window < 1) {
        window = 1;
    }
    h->policy = apr_psprintf(p, "%s;q=%" APR_INT64_T_FMT ";w=%"
                             APR_INT64_T_FMT, n, c->capacity, window);
    h->ratelimit = apr_psprintf(p, "%s;r=%" APR_INT64_T_FMT ";t=%"
                                APR_INT64_T_FMT, n, r->remaining, reset);
    h->x_limit = apr_psprintf(p, "%" APR_INT64_T_FMT, c->capacity);
    h->x_remaining = apr_psprintf(p, "%" APR_INT64_T_FMT, r->remaining);
    h->x_reset = apr_psprintf(p, "%" APR_INT64_T_FMT, reset);
    h->retry_after = NULL;
    if (!r->allowed) {
        /* "never" (cost above capacity) is told as one window */
        apr_int64_t ra = r->retry_after_ms < 0 ? window
                                               : ms_to_s(r->retry_after_ms);
        h->retry_after = apr_psprintf(p, "%" APR_INT64_T_FMT,
                                      ra < 1 ? 1 : ra);
    }
}

/* -------------------------------------------------------------- Redis -- */

/* Lua 5.1 numbers are doubles: every value stays an integer below 2^53
 * (bff_bucket_conf_check), the divisions are corrected to exact floor/ceil,
 * and levels are stored with %.0f because tostring() keeps 14 digits. */
const char BFF_BUCKET_LUA[] =
    "local function cdiv(a, b)\n"
    "  if a <= 0 then return 0 end\n"
    "  local q = math.floor(a / b)\n"
    "  if q * b < a then q = q + 1 end\n"
    "  return q\n"
    "end\n"
    "local function fdiv(a, b)\n"
    "  local q = math.floor(a / b)\n"
    "  if q * b > a then q = q - 1 end\n"
    "  return q\n"
    "end\n"
    "local cap = tonumber(ARGV[1])\n"
    "local rt = tonumber(ARGV[2])\n"
    "local rms = tonumber(ARGV[3])\n"
    "local now = tonumber(ARGV[4])\n"
    "local cost = tonumber(ARGV[5])\n"
    "local ttl = tonumber(ARGV[6])\n"
    "local lease = tonumber(ARGV[7] or ARGV[5])\n"
    "local refund = tonumber(ARGV[8] or '0')\n"
    "if now < 0 then\n"
    "  if redis.replicate_commands then redis.replicate_commands() end\n"
    "  local t = redis.call('TIME')\n"
    "  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "end\n"
    "local full = cap * rms\n"
    "local s = redis.call('HMGET', KEYS[1], 'l', 't')\n"
    "local level = tonumber(s[1])\n"
    "local last = tonumber(s[2])\n"
    "if level == nil or last == nil or level < 0 or level > full then\n"
    "  level = full\n"
    "  last = now\n"
    "elseif now > last then\n"
    "  level = math.min(full, level + (now - last) * rt)\n"
    "  last = now\n"
    "end\n"
    "if refund > 0 then level = math.min(full, level + refund * rms) end\n"
    "if cost < 0 then cost = 0 end\n"
    "local allowed = 0\n"
    "local retry = -1\n"
    "local granted = 0\n"
    "if cost <= cap then\n"
    "  local need = cost * rms\n"
    "  if level >= need then\n"
    "    level = level - need\n"
    "    allowed = 1\n"
    "    retry = 0\n"
    "    granted = cost\n"
    "    if lease > cost then\n"
    "      local extra = math.min(lease - cost, fdiv(level, rms) - fdiv(cap, 2))\n"
    "      if extra > 0 then\n"
    "        level = level - extra * rms\n"
    "        granted = granted + extra\n"
    "      end\n"
    "    end\n"
    "  else\n"
    "    retry = cdiv(need - level, rt)\n"
    "  end\n"
    "end\n"
    "local reset = cdiv(full - level, rt)\n"
    "redis.call('HSET', KEYS[1], 'l', string.format('%.0f', level),\n"
    "           't', string.format('%.0f', last))\n"
    "redis.call('PEXPIRE', KEYS[1], math.max(ttl, reset + 1000))\n"
    "return {allowed, fdiv(level, rms), retry, reset, granted}\n";

static const bff_redis_script_t bucket_script = {
    BFF_BUCKET_LUA, BFF_BUCKET_LUA_SHA1
};

const char *bff_bucket_redis_lease(bff_bucket_result_t *res,
                                   apr_int64_t *granted, bff_redis_t *rd,
                                   const char *key, apr_size_t keylen,
                                   const bff_bucket_conf_t *conf,
                                   apr_int64_t now_ms, apr_int64_t cost,
                                   apr_int64_t lease, apr_int64_t refund,
                                   apr_pool_t *p)
{
    const char *argv[8];
    redisReply *r;
    const char *err;
    size_t kl = keylen;
    int i;

    argv[0] = apr_psprintf(p, "%" APR_INT64_T_FMT, conf->capacity);
    argv[1] = apr_psprintf(p, "%" APR_INT64_T_FMT, conf->rate_tokens);
    argv[2] = apr_psprintf(p, "%" APR_INT64_T_FMT, conf->rate_ms);
    argv[3] = apr_psprintf(p, "%" APR_INT64_T_FMT, now_ms < 0 ? -1 : now_ms);
    argv[4] = apr_psprintf(p, "%" APR_INT64_T_FMT, cost);
    argv[5] = "0";
    argv[6] = apr_psprintf(p, "%" APR_INT64_T_FMT, lease > cost ? lease : cost);
    argv[7] = apr_psprintf(p, "%" APR_INT64_T_FMT, refund > 0 ? refund : 0);
    if ((err = bff_redis_eval(&r, rd, &bucket_script, 1, &key, &kl, 8, argv,
                              NULL, p))) {
        return err;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
        return bff_redis_reply_error(rd, "bucket script", r, p);
    }
    for (i = 0; i < 5; i++) {
        if (r->element[i]->type != REDIS_REPLY_INTEGER) {
            return bff_redis_reply_error(rd, "bucket script", r, p);
        }
    }
    res->allowed = r->element[0]->integer == 1;
    res->remaining = r->element[1]->integer;
    res->retry_after_ms = r->element[2]->integer;
    res->reset_ms = r->element[3]->integer;
    res->limit = conf->capacity;
    *granted = r->element[4]->integer;
    return NULL;
}

const char *bff_bucket_redis_take(bff_bucket_result_t *res,
                                  bff_redis_t *rd, const char *key,
                                  apr_size_t keylen,
                                  const bff_bucket_conf_t *conf,
                                  apr_int64_t now_ms, apr_int64_t cost,
                                  apr_pool_t *p)
{
    apr_int64_t granted;

    return bff_bucket_redis_lease(res, &granted, rd, key, keylen, conf,
                                  now_ms, cost, cost, 0, p);
}
