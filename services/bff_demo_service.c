/*
 * bff_demo_service.c - demo backend microservices for mod_bff.
 *
 * One binary, three roles (user / order / product), selected with --role.
 * Fixtures are loaded once at startup and every entity body is serialised
 * once, so the hot path is an array lookup plus queueing a cached response.
 *
 * Besides serving data the service is a test instrument:
 *   - fault injection per request (query parameters) and per process
 *     (/__admin/fault, --delay-ms),
 *   - a request log (in memory and optionally a JSON-lines file) recording
 *     exactly what arrived, including the raw request target,
 *   - in-flight accounting, to let tests verify fan-out concurrency.
 *
 * See services/README.md for the interface.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#define PROG "bff-demo-service"

#define MAX_BODY          (1024 * 1024)   /* request body limit -> 413 */
#define LOG_BODY_MAX      (64 * 1024)     /* request body bytes kept in log */
#define LOG_RING_SIZE     10000
#define MAX_DELAY_MS      60000
#define MAX_BATCH_IDS     100
#define MAX_ENTITY_ID     1000000         /* ids index a direct lookup table */
#define OVERSIZE_PAD      (2 * 1024 * 1024)
#define CONNECTION_LIMIT  1024
#define CONN_TIMEOUT_S    60
#define MAX_POOL_THREADS  256

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

enum role { ROLE_USER, ROLE_ORDER, ROLE_PRODUCT };

static struct {
    enum role role;
    const char *role_name;
    unsigned port;
    const char *bind;
    char *data_dir;
    const char *log_path;
    const char *pidfile;
    unsigned default_delay_ms;
    unsigned threads;           /* 0 = thread per connection */
} cfg;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, PROG ": error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warnx(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, PROG ": warning: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Strict decimal parse: digits only, no sign, no whitespace, no overflow. */
static bool parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    unsigned long long v = 0;
    if (s == NULL || *s == '\0')
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Growable string buffer with JSON string escaping                         */
/* ------------------------------------------------------------------------ */

struct sb {
    char *p;
    size_t len, cap;
    bool oom;                   /* sticky: once set, the content is invalid */
};

static bool sb_reserve(struct sb *b, size_t extra)
{
    if (b->oom)
        return false;
    if (extra > SIZE_MAX - b->len - 1) {
        b->oom = true;
        return false;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *np = realloc(b->p, cap);
    if (np == NULL) {
        b->oom = true;
        return false;
    }
    b->p = np;
    b->cap = cap;
    return true;
}

static void sb_putn(struct sb *b, const char *s, size_t n)
{
    if (!sb_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sb *b, const char *s) { sb_putn(b, s, strlen(s)); }
static void sb_putc(struct sb *b, char c) { sb_putn(b, &c, 1); }

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if (!sb_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void sb_free(struct sb *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Take ownership of the buffer (NULL on OOM). */
static char *sb_steal(struct sb *b, size_t *len)
{
    if (b->oom || !sb_reserve(b, 0)) {
        sb_free(b);
        return NULL;
    }
    char *p = b->p;
    *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, max U+10FFFF), or 0 if the bytes there are not valid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;     /* range of the 2nd byte */

    if (c < 0x80)
        return 1;
    else if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

/* Append s[0..n) as a quoted JSON string.  Bytes that are not valid UTF-8
 * become U+FFFD so the log stays valid JSON whatever a client sends.
 * lower: ASCII-lowercase (used for header names). */
static void sb_json_str(struct sb *b, const char *s, size_t n, bool lower)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    sb_putc(b, '"');
    while (i < n && !b->oom) {
        /* copy the longest run that needs no escaping in one go */
        size_t run = i;
        while (run < n && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' &&
               u[run] != '\\' && !(lower && u[run] >= 'A' && u[run] <= 'Z'))
            run++;
        if (run > i) {
            sb_putn(b, s + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char)c };
            sb_putn(b, e, 2);
            i++;
        } else if (c < 0x20) {
            char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            switch (c) {
            case '\n': sb_putn(b, "\\n", 2); break;
            case '\r': sb_putn(b, "\\r", 2); break;
            case '\t': sb_putn(b, "\\t", 2); break;
            default:   sb_putn(b, e, 6); break;
            }
            i++;
        } else if (c >= 'A' && c <= 'Z') {     /* only reached when lower */
            sb_putc(b, (char)(c - 'A' + 'a'));
            i++;
        } else {
            size_t l = utf8_seq_len(u + i, n - i);
            if (l == 0) {
                sb_puts(b, "\\ufffd");
                i++;
            } else {
                sb_putn(b, s + i, l);
                i += l;
            }
        }
    }
    sb_putc(b, '"');
}

/* ------------------------------------------------------------------------ */
/* Fixtures: precomputed bodies and responses                              */
/* ------------------------------------------------------------------------ */

struct entity {
    char *body;                 /* compact JSON, NUL-terminated */
    size_t len;
    struct MHD_Response *resp;  /* cached response, shared by all requests */
};

static struct entity *table;    /* indexed by id; body == NULL: absent */
static size_t table_len;        /* max id + 1 */
static size_t entity_count;

/* Static bodies that also get a cached response. */
static const char EMPTY_ARRAY[] = "[]";
static char *health_body;
static struct MHD_Response *health_resp;
static struct MHD_Response *empty_array_resp;

/* 2 MiB of 'x' for fault=oversize, allocated once. */
static char *oversize_pad;

static struct MHD_Response *make_static_response(const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return NULL;
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") != MHD_YES) {
        MHD_destroy_response(r);
        return NULL;
    }
    return r;
}

/* Fields per role, in output order.  Output objects are rebuilt in this
 * order (not copied) so the wire format does not depend on fixture layout. */
enum ftype { F_INT, F_STR, F_NUM };
struct field { const char *name; enum ftype type; };

static const struct field user_fields[] = {
    { "id", F_INT }, { "name", F_STR }, { "email", F_STR },
    { "password_hash", F_STR }, { "created_at", F_STR }, { "internal_note", F_STR },
};
static const struct field order_fields[] = {
    { "id", F_INT }, { "user_id", F_INT }, { "product_id", F_INT },
    { "quantity", F_INT }, { "total", F_NUM }, { "status", F_STR },
    { "internal_note", F_STR },
};
static const struct field product_fields[] = {
    { "id", F_INT }, { "name", F_STR }, { "price", F_NUM },
    { "category", F_STR }, { "stock", F_INT },
};

/* Real precision 15 prints fixture prices such as 19.99 as written (17,
 * jansson's default, would print 19.989999999999998). */
#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* Validate obj against fields and return a new object in canonical order. */
static json_t *canonical_object(const char *file, size_t idx, json_t *obj,
                                const struct field *fields, size_t nfields)
{
    if (!json_is_object(obj))
        die("%s: element %zu is not an object", file, idx);
    json_t *out = json_object();
    if (out == NULL)
        die("out of memory");
    for (size_t i = 0; i < nfields; i++) {
        json_t *v = json_object_get(obj, fields[i].name);
        bool ok = v != NULL &&
            ((fields[i].type == F_INT && json_is_integer(v)) ||
             (fields[i].type == F_STR && json_is_string(v)) ||
             (fields[i].type == F_NUM && json_is_number(v)));
        if (!ok)
            die("%s: element %zu: field \"%s\" missing or not %s", file, idx,
                fields[i].name,
                fields[i].type == F_INT ? "an integer" :
                fields[i].type == F_STR ? "a string" : "a number");
        if (json_object_set(out, fields[i].name, v) != 0)
            die("out of memory");
    }
    return out;
}

static json_int_t entity_id(const char *file, size_t idx, json_t *obj, const char *key)
{
    json_int_t id = json_integer_value(json_object_get(obj, key));
    if (id < 1 || id > MAX_ENTITY_ID)
        die("%s: element %zu: %s %" JSON_INTEGER_FORMAT " out of range 1..%d",
            file, idx, key, id, MAX_ENTITY_ID);
    return id;
}

static json_t *load_array(const char *name, char **path_out)
{
    char *path;
    json_error_t err;
    if (asprintf(&path, "%s/%s", cfg.data_dir, name) < 0)
        die("out of memory");
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (root == NULL && err.line < 1)
        die("%s", err.text);    /* e.g. cannot open: text names the file */
    if (root == NULL)
        die("%s: line %d column %d: %s", path, err.line, err.column, err.text);
    if (!json_is_array(root))
        die("%s: top level must be a JSON array", path);
    *path_out = path;
    return root;
}

static void table_alloc(size_t max_id)
{
    table_len = max_id + 1;
    table = calloc(table_len, sizeof *table);
    if (table == NULL)
        die("out of memory");
}

static void table_set(size_t id, json_t *value)
{
    struct entity *e = &table[id];
    e->body = json_dumps(value, DUMP_FLAGS);
    if (e->body == NULL)
        die("out of memory serialising fixtures");
    e->len = strlen(e->body);
    e->resp = make_static_response(e->body, e->len);
    if (e->resp == NULL)
        die("cannot create response object");
    entity_count++;
}

/* Users and products: one entity per id. */
static void load_entities(const char *name, const struct field *fields, size_t nfields)
{
    char *path;
    json_t *root = load_array(name, &path);
    size_t i, max_id = 0;
    json_t *v;

    json_array_foreach(root, i, v) {
        json_t *c = canonical_object(path, i, v, fields, nfields);
        json_decref(c);
        size_t id = (size_t)entity_id(path, i, v, "id");
        if (id > max_id)
            max_id = id;
    }
    table_alloc(max_id);
    json_array_foreach(root, i, v) {
        size_t id = (size_t)json_integer_value(json_object_get(v, "id"));
        if (table[id].body != NULL)
            die("%s: duplicate id %zu", path, id);
        json_t *c = canonical_object(path, i, v, fields, nfields);
        table_set(id, c);
        json_decref(c);
    }
    json_decref(root);
    free(path);
}

/* Orders: one entity (a JSON array, fixture order) per user id. */
static void load_orders(void)
{
    char *path;
    json_t *root = load_array("orders.json", &path);
    size_t i, max_uid = 0;
    json_t *v;

    json_array_foreach(root, i, v) {
        json_t *c = canonical_object(path, i, v, order_fields,
                                     sizeof order_fields / sizeof order_fields[0]);
        json_decref(c);
        entity_id(path, i, v, "id");
        size_t uid = (size_t)entity_id(path, i, v, "user_id");
        if (uid > max_uid)
            max_uid = uid;
    }
    json_t **lists = calloc(max_uid + 1, sizeof *lists);
    if (lists == NULL)
        die("out of memory");
    json_array_foreach(root, i, v) {
        size_t uid = (size_t)json_integer_value(json_object_get(v, "user_id"));
        if (lists[uid] == NULL && (lists[uid] = json_array()) == NULL)
            die("out of memory");
        json_t *c = canonical_object(path, i, v, order_fields,
                                     sizeof order_fields / sizeof order_fields[0]);
        if (json_array_append_new(lists[uid], c) != 0)
            die("out of memory");
    }
    table_alloc(max_uid);
    for (size_t uid = 0; uid <= max_uid; uid++) {
        if (lists[uid] != NULL) {
            table_set(uid, lists[uid]);
            json_decref(lists[uid]);
        }
    }
    free(lists);
    json_decref(root);
    free(path);
}

static void load_fixtures(void)
{
    switch (cfg.role) {
    case ROLE_USER:
        load_entities("users.json", user_fields, sizeof user_fields / sizeof user_fields[0]);
        break;
    case ROLE_PRODUCT:
        load_entities("products.json", product_fields,
                      sizeof product_fields / sizeof product_fields[0]);
        break;
    case ROLE_ORDER:
        load_orders();
        break;
    }
    if (entity_count == 0)
        die("%s: fixtures contain no records", cfg.data_dir);

    if (asprintf(&health_body, "{\"status\":\"ok\",\"service\":\"%s\"}", cfg.role_name) < 0)
        die("out of memory");
    health_resp = make_static_response(health_body, strlen(health_body));
    empty_array_resp = make_static_response(EMPTY_ARRAY, 2);
    oversize_pad = malloc(OVERSIZE_PAD);
    if (health_resp == NULL || empty_array_resp == NULL || oversize_pad == NULL)
        die("out of memory");
    memset(oversize_pad, 'x', OVERSIZE_PAD);
}

static void free_fixtures(void)
{
    for (size_t i = 0; i < table_len; i++) {
        if (table[i].resp)
            MHD_destroy_response(table[i].resp);
        free(table[i].body);
    }
    free(table);
    if (health_resp)
        MHD_destroy_response(health_resp);
    if (empty_array_resp)
        MHD_destroy_response(empty_array_resp);
    free(health_body);
    free(oversize_pad);
}

/* ------------------------------------------------------------------------ */
/* Shared state: stats, faults, request log                                 */
/* ------------------------------------------------------------------------ */

enum fault {
    FAULT_UNSET = -1, FAULT_NONE = 0, FAULT_DROP, FAULT_TRUNCATE, FAULT_INVALID,
    FAULT_OVERSIZE, FAULT_EMPTY, FAULT_NOTJSON
};
static const char *const fault_names[] = {
    "none", "drop", "truncate", "invalid", "oversize", "empty", "notjson"
};
#define N_FAULTS (sizeof fault_names / sizeof fault_names[0])

struct fault_spec {
    long delay_ms;              /* -1: unset */
    int status;                 /* 0: unset */
    int fault;                  /* enum fault; FAULT_UNSET: unset */
};

static atomic_ulong st_requests;
static atomic_long st_in_flight;
static atomic_long st_max_in_flight;
static atomic_ullong st_seq;

/* Process-wide fault set via /__admin/fault. */
static pthread_mutex_t fault_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct {
    bool active;
    struct fault_spec spec;
    unsigned long count;        /* as requested; 0 = until reset */
    unsigned long remaining;
} pfault;

/* Request log: ring of serialised entries + optional JSON-lines file. */
struct log_slot { uint64_t seq; char *line; size_t len; };
static pthread_mutex_t log_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct log_slot ring[LOG_RING_SIZE];
static size_t ring_head;        /* next slot to write */
static size_t ring_count;
static FILE *log_fp;
static bool log_write_failed;

static void ring_clear_locked(void)
{
    for (size_t i = 0; i < LOG_RING_SIZE; i++) {
        free(ring[i].line);
        ring[i].line = NULL;
    }
    ring_head = ring_count = 0;
}

/* Takes ownership of line. */
static void log_append(uint64_t seq, char *line, size_t len)
{
    pthread_mutex_lock(&log_mtx);
    if (log_fp != NULL) {
        if ((fwrite(line, 1, len, log_fp) != len || fputc('\n', log_fp) == EOF ||
             fflush(log_fp) != 0) && !log_write_failed) {
            log_write_failed = true;    /* report once, keep serving */
            warnx("writing request log %s failed: %s", cfg.log_path, strerror(errno));
        }
    }
    struct log_slot *s = &ring[ring_head];
    free(s->line);
    s->seq = seq;
    s->line = line;
    s->len = len;
    ring_head = (ring_head + 1) % LOG_RING_SIZE;
    if (ring_count < LOG_RING_SIZE)
        ring_count++;
    pthread_mutex_unlock(&log_mtx);
}

static int slot_cmp(const void *a, const void *b)
{
    uint64_t x = (*(const struct log_slot *const *)a)->seq;
    uint64_t y = (*(const struct log_slot *const *)b)->seq;
    return x < y ? -1 : x > y;
}

/* JSON array of the logged entries ordered by seq (= arrival order; entries
 * are appended on completion, so the ring itself is in completion order). */
static char *log_dump(bool clear, size_t *len)
{
    struct sb b = { 0 };
    pthread_mutex_lock(&log_mtx);
    struct log_slot **v = malloc((ring_count ? ring_count : 1) * sizeof *v);
    if (v != NULL) {
        size_t start = (ring_head + LOG_RING_SIZE - ring_count) % LOG_RING_SIZE;
        for (size_t i = 0; i < ring_count; i++)
            v[i] = &ring[(start + i) % LOG_RING_SIZE];
        qsort(v, ring_count, sizeof *v, slot_cmp);
        sb_putc(&b, '[');
        for (size_t i = 0; i < ring_count; i++) {
            if (i)
                sb_puts(&b, ",\n");
            sb_putn(&b, v[i]->line, v[i]->len);
        }
        sb_puts(&b, "]\n");
        if (clear && !b.oom)
            ring_clear_locked();
        free(v);
    } else
        b.oom = true;
    pthread_mutex_unlock(&log_mtx);
    return sb_steal(&b, len);
}

/* ------------------------------------------------------------------------ */
/* Delays                                                                   */
/* ------------------------------------------------------------------------ */

/* Delays must end early on shutdown, otherwise MHD_stop_daemon would wait
 * for sleeping connection threads. */
static pthread_mutex_t sleep_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sleep_cond;         /* wakes delay_sleep() on shutdown */
static pthread_cond_t timer_cond;         /* wakes the timer thread */
static bool shutting_down;

static void deadline_after(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int ts_cmp(const struct timespec *a, const struct timespec *b)
{
    if (a->tv_sec != b->tv_sec)
        return a->tv_sec < b->tv_sec ? -1 : 1;
    return a->tv_nsec < b->tv_nsec ? -1 : a->tv_nsec > b->tv_nsec;
}

/* Thread-per-connection mode: block only this connection's thread. */
static void delay_sleep(long ms)
{
    struct timespec ts;
    deadline_after(&ts, ms);
    pthread_mutex_lock(&sleep_mtx);
    while (!shutting_down && pthread_cond_timedwait(&sleep_cond, &sleep_mtx, &ts) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&sleep_mtx);
}

/* Thread-pool mode: a worker thread serves many connections, so sleeping
 * would stall the others.  Instead the connection is suspended and a timer
 * thread resumes it at its deadline (min-heap by deadline). */
struct timer_item { struct timespec at; struct MHD_Connection *conn; };
static struct {
    pthread_t thread;
    bool running;
    struct timer_item *heap;
    size_t n, cap;
} timers;

static bool timer_push_locked(struct timespec at, struct MHD_Connection *conn)
{
    if (timers.n == timers.cap) {
        size_t cap = timers.cap ? timers.cap * 2 : 64;
        struct timer_item *h = realloc(timers.heap, cap * sizeof *h);
        if (h == NULL)
            return false;
        timers.heap = h;
        timers.cap = cap;
    }
    size_t i = timers.n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (ts_cmp(&timers.heap[p].at, &at) <= 0)
            break;
        timers.heap[i] = timers.heap[p];
        i = p;
    }
    timers.heap[i].at = at;
    timers.heap[i].conn = conn;
    return true;
}

static struct MHD_Connection *timer_pop_locked(void)
{
    struct MHD_Connection *top = timers.heap[0].conn;
    struct timer_item last = timers.heap[--timers.n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= timers.n)
            break;
        if (c + 1 < timers.n && ts_cmp(&timers.heap[c + 1].at, &timers.heap[c].at) < 0)
            c++;
        if (ts_cmp(&last.at, &timers.heap[c].at) <= 0)
            break;
        timers.heap[i] = timers.heap[c];
        i = c;
    }
    if (timers.n > 0)
        timers.heap[i] = last;
    return top;
}

static void *timer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&sleep_mtx);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (timers.n > 0 && (shutting_down || ts_cmp(&timers.heap[0].at, &now) <= 0)) {
            struct MHD_Connection *c = timer_pop_locked();
            pthread_mutex_unlock(&sleep_mtx);
            MHD_resume_connection(c);
            pthread_mutex_lock(&sleep_mtx);
            continue;
        }
        if (shutting_down)
            break;
        if (timers.n == 0)
            pthread_cond_wait(&timer_cond, &sleep_mtx);
        else
            pthread_cond_timedwait(&timer_cond, &sleep_mtx, &timers.heap[0].at);
    }
    pthread_mutex_unlock(&sleep_mtx);
    return NULL;
}

/* Suspend conn for ms.  false: could not schedule (caller answers now). */
static bool delay_suspend(struct MHD_Connection *conn, long ms)
{
    struct timespec at;
    bool ok;
    deadline_after(&at, ms);
    pthread_mutex_lock(&sleep_mtx);
    ok = !shutting_down;
    if (ok) {
        /* Suspend under the lock so the timer cannot resume it first. */
        MHD_suspend_connection(conn);
        ok = timer_push_locked(at, conn);
        if (!ok)
            MHD_resume_connection(conn);
        else
            pthread_cond_signal(&timer_cond);
    }
    pthread_mutex_unlock(&sleep_mtx);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* Per-request context                                                      */
/* ------------------------------------------------------------------------ */

struct req {
    char *raw_uri;              /* request target exactly as received */
    bool started;
    bool admin;                 /* /__admin/...: not logged, not faulted */
    bool health;
    bool counted;               /* in-flight incremented, not yet logged */
    bool answered;
    bool resolved;              /* faults resolved (and count consumed) */
    bool delayed;
    bool too_large;
    uint64_t seq;
    struct timespec t_start;
    long in_flight;
    char *body;
    size_t body_len, body_cap;
    unsigned long long body_total;
    struct fault_spec eff;
    const char *bad_param;      /* invalid fault parameter name */
    char *extra_name;           /* header=NAME:VALUE, added to the response */
    char *extra_value;
    char method[16];            /* copy for logging aborted requests */
};

/* MHD_OPTION_URI_LOG_CALLBACK: the only place where MHD exposes the raw
 * target (the access handler gets it decoded and without the query).  The
 * returned pointer becomes the request's *req_cls. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    struct req *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->raw_uri = strdup(uri ? uri : "");
    if (r->raw_uri == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

static void req_free(struct req *r)
{
    free(r->raw_uri);
    free(r->body);
    free(r->extra_name);
    free(r->extra_value);
    free(r);
}

static void request_begin(struct req *r)
{
    clock_gettime(CLOCK_REALTIME, &r->t_start);
    r->seq = atomic_fetch_add(&st_seq, 1) + 1;
    atomic_fetch_add(&st_requests, 1);
    r->in_flight = atomic_fetch_add(&st_in_flight, 1) + 1;
    long m = atomic_load(&st_max_in_flight);
    while (r->in_flight > m &&
           !atomic_compare_exchange_weak(&st_max_in_flight, &m, r->in_flight))
        ;
    r->counted = true;
}

/* Header collection for the log: names lower-cased, repeated names joined
 * with ", " so the "headers" object has unique keys. */
struct hdr { const char *k, *v; };
struct hdrs { struct hdr *v; size_t n, cap; bool oom; };

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind,
                                      const char *key, const char *value)
{
    (void)kind;
    struct hdrs *h = cls;
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        struct hdr *nv = realloc(h->v, cap * sizeof *nv);
        if (nv == NULL) {
            h->oom = true;
            return MHD_NO;
        }
        h->v = nv;
        h->cap = cap;
    }
    h->v[h->n].k = key ? key : "";
    h->v[h->n].v = value ? value : "";
    h->n++;
    return MHD_YES;
}

static void put_time(struct sb *b, const struct timespec *t)
{
    sb_printf(b, "%lld.%06ld", (long long)t->tv_sec, t->tv_nsec / 1000);
}

/* Record the request (status 0 = no response sent) and leave in-flight. */
static void request_log(struct MHD_Connection *conn, struct req *r,
                        const char *method, unsigned status)
{
    if (!r->counted)
        return;
    r->counted = false;

    struct timespec t_end;
    clock_gettime(CLOCK_REALTIME, &t_end);
    atomic_fetch_sub(&st_in_flight, 1);

    struct hdrs h = { 0 };
    if (conn != NULL)
        MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, &h);

    struct sb b = { 0 };
    sb_printf(&b, "{\"seq\":%" PRIu64 ",\"t_start\":", r->seq);
    put_time(&b, &r->t_start);
    sb_puts(&b, ",\"t_end\":");
    put_time(&b, &t_end);
    sb_puts(&b, ",\"method\":");
    sb_json_str(&b, method ? method : "", method ? strlen(method) : 0, false);
    sb_puts(&b, ",\"uri\":");
    sb_json_str(&b, r->raw_uri, strlen(r->raw_uri), false);
    sb_puts(&b, ",\"headers\":{");
    bool first = true;
    for (size_t i = 0; i < h.n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcasecmp(h.v[i].k, h.v[j].k) == 0;
        if (seen)
            continue;
        if (!first)
            sb_putc(&b, ',');
        first = false;
        sb_json_str(&b, h.v[i].k, strlen(h.v[i].k), true);
        sb_putc(&b, ':');
        /* join all values of this name */
        struct sb v = { 0 };
        for (size_t j = i; j < h.n; j++) {
            if (strcasecmp(h.v[i].k, h.v[j].k) != 0)
                continue;
            if (v.len)
                sb_puts(&v, ", ");
            sb_puts(&v, h.v[j].v);
        }
        if (v.oom)
            b.oom = true;
        sb_json_str(&b, v.p ? v.p : "", v.len, false);
        sb_free(&v);
    }
    sb_puts(&b, "},\"body\":");
    sb_json_str(&b, r->body ? r->body : "", r->body_len > LOG_BODY_MAX ? LOG_BODY_MAX : r->body_len,
                false);
    /* the client's source port tells tests which connection carried the
     * request (keep-alive reuse) */
    unsigned peer_port = 0;
    if (conn != NULL) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci != NULL && ci->client_addr != NULL) {
            if (ci->client_addr->sa_family == AF_INET)
                peer_port = ntohs(((const struct sockaddr_in *)(const void *)ci->client_addr)->sin_port);
            else if (ci->client_addr->sa_family == AF_INET6)
                peer_port = ntohs(((const struct sockaddr_in6 *)(const void *)ci->client_addr)->sin6_port);
        }
    }
    sb_printf(&b, ",\"body_len\":%llu,\"in_flight\":%ld,\"status\":%u,\"peer_port\":%u}",
              r->body_total, r->in_flight, status, peer_port);
    free(h.v);
    if (h.oom)
        b.oom = true;

    size_t len;
    char *line = sb_steal(&b, &len);
    if (line == NULL) {
        warnx("out of memory: request %" PRIu64 " not logged", r->seq);
        return;
    }
    log_append(r->seq, line, len);
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                */
/* ------------------------------------------------------------------------ */

struct reply {
    unsigned status;
    const char *body;
    size_t len;
    char *owned;                /* malloc'd body (body == owned) or NULL */
    struct MHD_Response *cached;
    const char *ctype;
    const char *allow;          /* Allow header for 405 */
};

static void reply_static(struct reply *rp, unsigned status, const char *body)
{
    rp->status = status;
    rp->body = body;
    rp->len = strlen(body);
}

static void reply_owned(struct reply *rp, unsigned status, char *body, size_t len)
{
    rp->status = status;
    rp->body = rp->owned = body;
    rp->len = len;
}

static void reply_entity(struct reply *rp, const char *body, size_t len,
                         struct MHD_Response *cached)
{
    rp->status = MHD_HTTP_OK;
    rp->body = body;
    rp->len = len;
    rp->cached = cached;
}

/* Body delivered from up to 6 pieces, optionally failing after stop_at
 * bytes (fault=truncate).  Lets oversize/truncate reuse precomputed data
 * instead of copying megabytes per request. */
struct pieces {
    const char *p[6];
    size_t n[6];
    int count;
    uint64_t total, stop_at;
    char *owned;
};

static ssize_t pieces_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct pieces *s = cls;
    if (pos >= s->stop_at)
        return pos >= s->total ? MHD_CONTENT_READER_END_OF_STREAM
                               : MHD_CONTENT_READER_END_WITH_ERROR;
    uint64_t left = s->stop_at - pos;
    size_t want = max < left ? max : (size_t)left;
    size_t done = 0;
    uint64_t off = 0;
    for (int i = 0; i < s->count && done < want; i++) {
        uint64_t end = off + s->n[i];
        if (pos + done < end) {
            size_t from = (size_t)(pos + done - off);
            size_t k = s->n[i] - from;
            if (k > want - done)
                k = want - done;
            memcpy(buf + done, s->p[i] + from, k);
            done += k;
        }
        off = end;
    }
    return (ssize_t)done;
}

static void pieces_free(void *cls)
{
    struct pieces *s = cls;
    free(s->owned);
    free(s);
}

/* Takes ownership of rp->owned. */
static struct MHD_Response *pieces_response(struct reply *rp, struct pieces *tmpl)
{
    struct pieces *s = malloc(sizeof *s);
    if (s == NULL)
        return NULL;
    *s = *tmpl;
    s->total = 0;
    for (int i = 0; i < s->count; i++)
        s->total += s->n[i];
    if (s->stop_at > s->total)
        s->stop_at = s->total;
    s->owned = rp->owned;
    struct MHD_Response *r = MHD_create_response_from_callback(s->total, 64 * 1024,
                                                               pieces_read, s, pieces_free);
    if (r == NULL) {
        free(s);                /* rp->owned still freed by the caller */
        return NULL;
    }
    rp->owned = NULL;
    return r;
}

/* Valid JSON of ~2 MiB derived from the real body: a "padding" member is
 * added to the object (or to the last object of an array). */
static struct MHD_Response *oversize_response(struct reply *rp)
{
    struct pieces t = { .stop_at = UINT64_MAX, .count = 4 };
    const char *b = rp->body;
    size_t n = rp->len;

    t.p[2] = oversize_pad;
    t.n[2] = OVERSIZE_PAD;
    if (n >= 1 && b[0] == '{' && b[n - 1] == '}') {
        t.p[0] = b; t.n[0] = n - 1;
        t.p[1] = n > 2 ? ",\"padding\":\"" : "\"padding\":\"";
        t.p[3] = "\"}";
    } else if (n >= 3 && b[0] == '[' && b[n - 2] == '}' && b[n - 1] == ']') {
        t.p[0] = b; t.n[0] = n - 2;
        t.p[1] = ",\"padding\":\"";
        t.p[3] = "\"}]";
    } else if (n == 2 && b[0] == '[' && b[1] == ']') {
        t.p[0] = "["; t.n[0] = 1;
        t.p[1] = "{\"padding\":\"";
        t.p[3] = "\"}]";
    } else {                    /* any other JSON value: wrap it */
        t.p[0] = ""; t.n[0] = 0;
        t.p[1] = "{\"padding\":\"";
        t.p[3] = "\",\"value\":";
        t.p[4] = b; t.n[4] = n;
        t.p[5] = "}"; t.n[5] = 1;
        t.count = 6;
    }
    t.n[1] = strlen(t.p[1]);
    t.n[3] = strlen(t.p[3]);
    return pieces_response(rp, &t);
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, struct req *r,
                                  const char *method, struct reply *rp,
                                  const struct fault_spec *f)
{
    struct MHD_Response *resp = NULL;
    bool shared = false;
    int fault = f ? f->fault : FAULT_NONE;
    const char *ctype = rp->ctype ? rp->ctype : "application/json";

    r->answered = true;
    if (fault == FAULT_DROP) {
        request_log(conn, r, method, 0);
        free(rp->owned);
        return MHD_NO;          /* MHD closes the connection, sends nothing */
    }
    if (f && f->status) {
        char *body;
        int n = asprintf(&body, "{\"error\":\"injected\",\"status\":%d}", f->status);
        free(rp->owned);
        memset(rp, 0, sizeof *rp);
        if (n < 0)
            return MHD_NO;
        reply_owned(rp, (unsigned)f->status, body, (size_t)n);
    }

    switch (fault) {
    case FAULT_TRUNCATE: {
        struct pieces t = { .p = { rp->body }, .n = { rp->len }, .count = 1,
                            .stop_at = rp->len / 2 };
        resp = pieces_response(rp, &t);
        break;
    }
    case FAULT_INVALID:
        /* cut in the middle: syntactically invalid, correct length */
        resp = MHD_create_response_from_buffer(rp->len / 2, (void *)rp->body,
                                               MHD_RESPMEM_MUST_COPY);
        break;
    case FAULT_OVERSIZE:
        resp = oversize_response(rp);
        break;
    case FAULT_EMPTY:
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        break;
    case FAULT_NOTJSON: {
        static const char html[] = "<html>oops</html>";
        resp = MHD_create_response_from_buffer(sizeof html - 1, (void *)html,
                                               MHD_RESPMEM_PERSISTENT);
        ctype = "text/html";
        break;
    }
    default:
        if (rp->cached && rp->owned == NULL && !r->extra_name) {
            resp = rp->cached;
            shared = true;
        } else if (rp->owned) {
            resp = MHD_create_response_from_buffer(rp->len, rp->owned, MHD_RESPMEM_MUST_FREE);
            if (resp)
                rp->owned = NULL;
        } else {
            resp = MHD_create_response_from_buffer(rp->len, (void *)rp->body,
                                                   MHD_RESPMEM_PERSISTENT);
        }
        break;
    }
    free(rp->owned);
    rp->owned = NULL;
    if (resp == NULL) {
        request_log(conn, r, method, 0);
        return MHD_NO;
    }
    if (!shared) {
        if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) != MHD_YES ||
            (rp->allow && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, rp->allow) != MHD_YES) ||
            (r->extra_name && MHD_add_response_header(resp, r->extra_name,
                                                      r->extra_value) != MHD_YES)) {
            MHD_destroy_response(resp);
            request_log(conn, r, method, 0);
            return MHD_NO;
        }
    }
    /* Log before queueing: the response is only sent after we return, so a
     * client can never see a reply before its request left in-flight. */
    request_log(conn, r, method, rp->status);
    enum MHD_Result ret = MHD_queue_response(conn, rp->status, resp);
    if (!shared)
        MHD_destroy_response(resp);
    return ret;
}

/* ------------------------------------------------------------------------ */
/* Faults                                                                   */
/* ------------------------------------------------------------------------ */

/* Parse delay_ms/status/fault/count from the query.  Returns the name of
 * the first invalid parameter, or NULL.  *any set if a parameter was given. */
static const char *parse_fault_args(struct MHD_Connection *conn, struct fault_spec *f,
                                    unsigned long *count, bool *any)
{
    const char *v;
    unsigned long long n;

    f->delay_ms = -1;
    f->status = 0;
    f->fault = FAULT_UNSET;
    *any = false;
    if ((v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "delay_ms"))) {
        if (!parse_uint(v, MAX_DELAY_MS, &n))
            return "delay_ms";
        f->delay_ms = (long)n;
        *any = true;
    }
    if ((v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "status"))) {
        /* 1xx are not final responses; MHD cannot send them as such */
        if (!parse_uint(v, 599, &n) || n < 200)
            return "status";
        f->status = (int)n;
        *any = true;
    }
    if ((v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "fault"))) {
        size_t i;
        for (i = 0; i < N_FAULTS && strcmp(v, fault_names[i]) != 0; i++)
            ;
        if (i == N_FAULTS)
            return "fault";
        f->fault = (int)i;
        *any = true;
    }
    if (count && (v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "count"))) {
        if (!parse_uint(v, ULONG_MAX, &n))
            return "count";
        *count = (unsigned long)n;
        *any = true;
    }
    return NULL;
}

/* header=NAME:VALUE (per request only): one more response header, e.g.
 * Set-Cookie or Cache-Control, for tests of what a gateway may cache. NAME
 * is a token, VALUE visible ASCII and spaces. 0 when malformed. */
static int parse_extra_header(struct MHD_Connection *conn, struct req *r)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "header");
    const char *colon, *c;

    if (!v)
        return 1;
    colon = strchr(v, ':');
    if (!colon || colon == v)
        return 0;
    for (c = v; c < colon; c++)
        if (!isalnum((unsigned char)*c) && !strchr("!#$%&'*+-.^_`|~", *c))
            return 0;
    for (c = colon + 1; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
            return 0;
    free(r->extra_name);
    free(r->extra_value);
    r->extra_name = strndup(v, (size_t)(colon - v));
    for (c = colon + 1; *c == ' '; c++)
        ;
    r->extra_value = strdup(c);
    return r->extra_name && r->extra_value;
}

/* Effective faults: per-request parameters win field by field over the
 * process-wide fault, which wins over --delay-ms.  Consumes one use of a
 * counted process fault. */
static void resolve_faults(struct MHD_Connection *conn, struct req *r)
{
    struct fault_spec q, p = { -1, 0, FAULT_UNSET };
    bool any;

    r->resolved = true;
    r->eff = (struct fault_spec){ 0, 0, FAULT_NONE };
    if (r->health)
        return;                 /* health checks are never faulted */
    r->bad_param = parse_fault_args(conn, &q, NULL, &any);
    if (r->bad_param)
        return;
    if (!parse_extra_header(conn, r)) {
        r->bad_param = "header";
        return;
    }

    pthread_mutex_lock(&fault_mtx);
    if (pfault.active) {
        p = pfault.spec;
        if (pfault.count > 0 && --pfault.remaining == 0)
            pfault.active = false;
    }
    pthread_mutex_unlock(&fault_mtx);

    r->eff.delay_ms = q.delay_ms >= 0 ? q.delay_ms
                    : p.delay_ms >= 0 ? p.delay_ms : (long)cfg.default_delay_ms;
    r->eff.status = q.status ? q.status : p.status;
    r->eff.fault = q.fault != FAULT_UNSET ? q.fault
                 : p.fault != FAULT_UNSET ? p.fault : FAULT_NONE;
}

/* ------------------------------------------------------------------------ */
/* Routing                                                                  */
/* ------------------------------------------------------------------------ */

static const char ERR_NOT_FOUND[] = "{\"error\":\"not found\"}";
static const char ERR_METHOD[] = "{\"error\":\"method not allowed\"}";
static const char ERR_BAD_ID[] = "{\"error\":\"bad id\"}";

static bool is_get(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

/* If url is prefix + one path segment, return that segment. */
static const char *match_id(const char *url, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(url, prefix, n) != 0 || strchr(url + n, '/') != NULL)
        return NULL;
    return url + n;
}

/* Looks up a numeric id; false if the id is not a decimal number.  Numbers
 * beyond the table are valid but absent. */
static bool lookup(const char *s, struct entity **e)
{
    unsigned long long id;
    *e = NULL;
    if (*s == '\0' || strspn(s, "0123456789") != strlen(s))
        return false;
    if (parse_uint(s, ULLONG_MAX, &id) && id < table_len && table[id].body)
        *e = &table[id];
    return true;
}

static void route_batch(struct req *r, struct reply *rp)
{
    json_error_t err;
    json_t *root = json_loadb(r->body ? r->body : "", r->body_len, 0, &err);
    json_t *ids = json_is_object(root) ? json_object_get(root, "ids") : NULL;
    size_t i, n, found = 0;
    json_t *v;
    struct entity *picked[MAX_BATCH_IDS];

    if (root == NULL) {
        reply_static(rp, MHD_HTTP_BAD_REQUEST, "{\"error\":\"body is not valid JSON\"}");
        return;
    }
    if (!json_is_array(ids)) {
        json_decref(root);
        reply_static(rp, MHD_HTTP_BAD_REQUEST,
                     "{\"error\":\"body must be an object with an array \\\"ids\\\"\"}");
        return;
    }
    n = json_array_size(ids);
    if (n > MAX_BATCH_IDS) {
        json_decref(root);
        reply_static(rp, MHD_HTTP_BAD_REQUEST, "{\"error\":\"too many ids (max 100)\"}");
        return;
    }
    json_array_foreach(ids, i, v) {
        if (!json_is_integer(v)) {
            json_decref(root);
            reply_static(rp, MHD_HTTP_BAD_REQUEST, "{\"error\":\"ids must be integers\"}");
            return;
        }
        json_int_t id = json_integer_value(v);
        if (id < 1 || (unsigned long long)id >= table_len || table[id].body == NULL)
            continue;           /* unknown ids are skipped */
        struct entity *e = &table[id];
        bool dup = false;
        for (size_t k = 0; k < found && !dup; k++)
            dup = picked[k] == e;
        if (!dup)
            picked[found++] = e;
    }
    json_decref(root);

    struct sb b = { 0 };
    sb_putc(&b, '[');
    for (size_t k = 0; k < found; k++) {
        if (k)
            sb_putc(&b, ',');
        sb_putn(&b, picked[k]->body, picked[k]->len);
    }
    sb_putc(&b, ']');
    size_t len;
    char *body = sb_steal(&b, &len);
    if (body == NULL)
        reply_static(rp, MHD_HTTP_INTERNAL_SERVER_ERROR, "{\"error\":\"out of memory\"}");
    else
        reply_owned(rp, MHD_HTTP_OK, body, len);
}

/* POST /orders (order role): creates an order from a JSON object and
 * answers 201 with its new id and the order as received. Nothing is
 * stored: the request log is what tests look at. */
static atomic_ullong next_order_id = 100000;

static void route_create_order(struct req *r, struct reply *rp)
{
    json_error_t err;
    json_t *order = json_loadb(r->body ? r->body : "", r->body_len, 0, &err);
    json_t *answer;
    char *body;

    if (!json_is_object(order)) {
        json_decref(order);
        reply_static(rp, MHD_HTTP_BAD_REQUEST,
                     "{\"error\":\"body must be a JSON object\"}");
        return;
    }
    answer = json_pack("{s:I, s:s, s:o}", "id",
                       (json_int_t)atomic_fetch_add(&next_order_id, 1),
                       "status", "created", "order", order);
    body = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
    json_decref(answer);
    if (body == NULL)
        reply_static(rp, MHD_HTTP_INTERNAL_SERVER_ERROR, "{\"error\":\"out of memory\"}");
    else
        reply_owned(rp, MHD_HTTP_CREATED, body, strlen(body));
}

static void route(struct req *r, const char *url, const char *method, struct reply *rp)
{
    const char *id = NULL;
    struct entity *e;
    bool batch = cfg.role == ROLE_PRODUCT && strcmp(url, "/products/batch") == 0;

    if (r->too_large) {
        reply_static(rp, MHD_HTTP_CONTENT_TOO_LARGE, "{\"error\":\"request body too large\"}");
        return;
    }
    if (r->health) {
        if (!is_get(method)) {
            reply_static(rp, MHD_HTTP_METHOD_NOT_ALLOWED, ERR_METHOD);
            rp->allow = "GET, HEAD";
            return;
        }
        reply_entity(rp, health_body, strlen(health_body), health_resp);
        return;
    }
    if (cfg.role == ROLE_ORDER && strcmp(url, "/orders") == 0) {
        if (strcmp(method, "POST") != 0) {
            reply_static(rp, MHD_HTTP_METHOD_NOT_ALLOWED, ERR_METHOD);
            rp->allow = "POST";
            return;
        }
        route_create_order(r, rp);
        return;
    }
    if (batch) {
        if (strcmp(method, "POST") != 0) {
            reply_static(rp, MHD_HTTP_METHOD_NOT_ALLOWED, ERR_METHOD);
            rp->allow = "POST";
            return;
        }
        route_batch(r, rp);
        return;
    }
    switch (cfg.role) {
    case ROLE_USER:    id = match_id(url, "/users/"); break;
    case ROLE_ORDER:   id = match_id(url, "/orders/user/"); break;
    case ROLE_PRODUCT: id = match_id(url, "/products/"); break;
    }
    if (id == NULL) {
        reply_static(rp, MHD_HTTP_NOT_FOUND, ERR_NOT_FOUND);
        return;
    }
    if (!is_get(method)) {
        reply_static(rp, MHD_HTTP_METHOD_NOT_ALLOWED, ERR_METHOD);
        rp->allow = "GET, HEAD";
        return;
    }
    if (!lookup(id, &e)) {
        reply_static(rp, MHD_HTTP_BAD_REQUEST, ERR_BAD_ID);
        return;
    }
    if (e != NULL)
        reply_entity(rp, e->body, e->len, e->resp);
    else if (cfg.role == ROLE_ORDER)
        reply_entity(rp, EMPTY_ARRAY, 2, empty_array_resp);   /* no orders */
    else
        reply_static(rp, MHD_HTTP_NOT_FOUND, cfg.role == ROLE_USER
                     ? "{\"error\":\"user not found\"}" : "{\"error\":\"product not found\"}");
}

/* ------------------------------------------------------------------------ */
/* Admin API                                                                */
/* ------------------------------------------------------------------------ */

static void fault_state_locked(struct sb *b)
{
    sb_printf(b, "{\"active\":%s,\"delay_ms\":%ld,\"status\":%d,\"fault\":\"%s\","
              "\"count\":%lu,\"remaining\":%lu,\"default_delay_ms\":%u}",
              pfault.active ? "true" : "false",
              pfault.active && pfault.spec.delay_ms >= 0 ? pfault.spec.delay_ms : 0,
              pfault.active ? pfault.spec.status : 0,
              pfault.active && pfault.spec.fault > 0 ? fault_names[pfault.spec.fault] : "none",
              pfault.active ? pfault.count : 0,
              pfault.active ? pfault.remaining : 0, cfg.default_delay_ms);
}

static void route_admin(struct MHD_Connection *conn, const char *url, const char *method,
                        struct reply *rp)
{
    struct sb b = { 0 };
    unsigned status = MHD_HTTP_OK;

    if (strcmp(url, "/__admin/fault") != 0 && strcmp(url, "/__admin/reset") != 0 &&
        strcmp(url, "/__admin/log") != 0 && strcmp(url, "/__admin/stats") != 0) {
        reply_static(rp, MHD_HTTP_NOT_FOUND, ERR_NOT_FOUND);
        return;
    }
    if (!is_get(method)) {
        reply_static(rp, MHD_HTTP_METHOD_NOT_ALLOWED, ERR_METHOD);
        rp->allow = "GET, HEAD";
        return;
    }

    if (strcmp(url, "/__admin/fault") == 0) {
        struct fault_spec f;
        unsigned long count = 0;
        bool any;
        const char *bad = parse_fault_args(conn, &f, &count, &any);
        if (bad) {
            sb_printf(&b, "{\"error\":\"bad fault parameter: %s\"}", bad);
            status = MHD_HTTP_BAD_REQUEST;
        } else {
        pthread_mutex_lock(&fault_mtx);
        if (any) {              /* replaces the previous fault entirely */
            pfault.spec = f;
            pfault.count = pfault.remaining = count;
            pfault.active = f.delay_ms >= 0 || f.status || f.fault > FAULT_NONE;
        }
        fault_state_locked(&b);
        pthread_mutex_unlock(&fault_mtx);
        }
    } else if (strcmp(url, "/__admin/reset") == 0) {
        pthread_mutex_lock(&fault_mtx);
        memset(&pfault, 0, sizeof pfault);
        pthread_mutex_unlock(&fault_mtx);
        pthread_mutex_lock(&log_mtx);
        ring_clear_locked();
        pthread_mutex_unlock(&log_mtx);
        atomic_store(&st_requests, 0);
        atomic_store(&st_seq, 0);
        atomic_store(&st_max_in_flight, atomic_load(&st_in_flight));
        sb_puts(&b, "{\"status\":\"reset\"}");
    } else if (strcmp(url, "/__admin/log") == 0) {
        const char *c = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "clear");
        size_t len;
        char *body = log_dump(c != NULL && strcmp(c, "0") != 0, &len);
        if (body == NULL)
            reply_static(rp, MHD_HTTP_INTERNAL_SERVER_ERROR, "{\"error\":\"out of memory\"}");
        else
            reply_owned(rp, MHD_HTTP_OK, body, len);
        return;
    } else {
        sb_printf(&b, "{\"requests\":%lu,\"max_in_flight\":%ld,\"in_flight\":%ld}",
                  atomic_load(&st_requests), atomic_load(&st_max_in_flight),
                  atomic_load(&st_in_flight));
    }

    size_t len;
    char *body = sb_steal(&b, &len);
    if (body == NULL)
        reply_static(rp, MHD_HTTP_INTERNAL_SERVER_ERROR, "{\"error\":\"out of memory\"}");
    else
        reply_owned(rp, status, body, len);
}

/* ------------------------------------------------------------------------ */
/* MHD callbacks                                                            */
/* ------------------------------------------------------------------------ */

static void body_append(struct req *r, const char *data, size_t n)
{
    r->body_total += n;
    if (r->too_large)
        return;                 /* keep draining, answer 413 at the end */
    if (r->body_total > MAX_BODY) {
        r->too_large = true;
        return;
    }
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + n + 1)
            cap *= 2;
        char *p = realloc(r->body, cap);
        if (p == NULL) {
            r->too_large = true;        /* cannot hold it: treat as too large */
            return;
        }
        r->body = p;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    (void)cls;
    (void)version;
    struct req *r = *req_cls;
    struct reply rp = { 0 };

    if (r == NULL) {            /* on_uri failed to allocate */
        if ((r = on_uri(NULL, url, conn)) == NULL)
            return MHD_NO;
        *req_cls = r;
    }
    if (!r->started) {
        r->started = true;
        snprintf(r->method, sizeof r->method, "%s", method);   /* truncation harmless */
        r->admin = strncmp(url, "/__admin/", 9) == 0;
        r->health = strcmp(url, "/health") == 0;
        if (!r->admin)
            request_begin(r);
        /* Refuse oversized bodies before reading them when announced. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        unsigned long long n;
        if (cl && parse_uint(cl, ULLONG_MAX, &n) && n > MAX_BODY) {
            r->too_large = true;
            r->body_total = n;
            route(r, url, method, &rp);
            return send_reply(conn, r, method, &rp, NULL);
        }
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        if (!r->answered)
            body_append(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->answered)
        return MHD_YES;

    if (r->admin) {
        route_admin(conn, url, method, &rp);
        return send_reply(conn, r, method, &rp, NULL);
    }

    if (!r->resolved)
        resolve_faults(conn, r);
    if (r->bad_param) {
        char *body;
        int n = asprintf(&body, "{\"error\":\"bad fault parameter: %s\"}", r->bad_param);
        if (n < 0)
            reply_static(&rp, MHD_HTTP_BAD_REQUEST, "{\"error\":\"bad fault parameter\"}");
        else
            reply_owned(&rp, MHD_HTTP_BAD_REQUEST, body, (size_t)n);
        return send_reply(conn, r, method, &rp, NULL);
    }
    if (r->eff.delay_ms > 0 && !r->delayed) {
        r->delayed = true;
        if (cfg.threads == 0)
            delay_sleep(r->eff.delay_ms);
        else if (delay_suspend(conn, r->eff.delay_ms))
            return MHD_YES;     /* called again after MHD_resume_connection */
    }
    route(r, url, method, &rp);
    return send_reply(conn, r, method, &rp, &r->eff);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)toe;
    struct req *r = *req_cls;
    if (r == NULL)
        return;
    /* Aborted before we answered (client went away mid-upload, timeout):
     * still record it, with status 0. */
    if (r->counted)
        request_log(conn, r, r->method, 0);
    req_free(r);
    *req_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];              /* longer messages are truncated, not lost */
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0)
        return;
    size_t len = strlen(msg);
    while (len > 0 && msg[len - 1] == '\n')
        msg[--len] = '\0';
    fprintf(stderr, PROG ": mhd: %s\n", msg);
}

/* ------------------------------------------------------------------------ */
/* Startup                                                                  */
/* ------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: " PROG " --role user|order|product --port N [--bind 127.0.0.1]\n"
        "       [--data DIR] [--log FILE] [--pidfile FILE] [--delay-ms N] [--threads N]\n"
        "  --port 0 picks a free port (printed in the ready line)\n"
        "  --threads 0 (default): one thread per connection; N>0: pool of N threads\n");
}

static unsigned long long num_arg(const char *opt, const char *v, unsigned long long max)
{
    unsigned long long n;
    if (!parse_uint(v, max, &n))
        die("%s: expected an integer 0..%llu, got \"%s\"", opt, max, v);
    return n;
}

static void parse_args(int argc, char **argv)
{
    const char *role = NULL;
    bool have_port = false;

    cfg.bind = "127.0.0.1";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        char opt[32];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0) {
            usage(stderr);
            die("unexpected argument \"%s\"", a);
        }
        const char *eq = strchr(a, '=');
        size_t olen = eq ? (size_t)(eq - a) : strlen(a);
        if (olen >= sizeof opt)
            die("unknown option \"%s\"", a);
        memcpy(opt, a, olen);
        opt[olen] = '\0';
        if (eq)
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        else
            die("%s requires a value", opt);

        if (strcmp(opt, "--role") == 0)
            role = v;
        else if (strcmp(opt, "--port") == 0) {
            cfg.port = (unsigned)num_arg(opt, v, 65535);
            have_port = true;
        } else if (strcmp(opt, "--bind") == 0)
            cfg.bind = v;
        else if (strcmp(opt, "--data") == 0) {
            free(cfg.data_dir);
            if ((cfg.data_dir = strdup(v)) == NULL)
                die("out of memory");
        } else if (strcmp(opt, "--log") == 0)
            cfg.log_path = v;
        else if (strcmp(opt, "--pidfile") == 0)
            cfg.pidfile = v;
        else if (strcmp(opt, "--delay-ms") == 0)
            cfg.default_delay_ms = (unsigned)num_arg(opt, v, MAX_DELAY_MS);
        else if (strcmp(opt, "--threads") == 0)
            cfg.threads = (unsigned)num_arg(opt, v, MAX_POOL_THREADS);
        else {
            usage(stderr);
            die("unknown option \"%s\"", opt);
        }
    }
    if (role == NULL || !have_port) {
        usage(stderr);
        die("--role and --port are required");
    }
    if (strcmp(role, "user") == 0)
        cfg.role = ROLE_USER;
    else if (strcmp(role, "order") == 0)
        cfg.role = ROLE_ORDER;
    else if (strcmp(role, "product") == 0)
        cfg.role = ROLE_PRODUCT;
    else
        die("--role must be user, order or product (got \"%s\")", role);
    cfg.role_name = role;

    if (cfg.data_dir == NULL) {
        /* default: "fixtures" next to the executable */
        const char *slash = strrchr(argv[0], '/');
        int n = slash ? asprintf(&cfg.data_dir, "%.*s/fixtures", (int)(slash - argv[0]), argv[0])
                      : asprintf(&cfg.data_dir, "services/fixtures");
        if (n < 0)
            die("out of memory");
    }
}

/* Creates the listening socket ourselves (rather than letting MHD do it)
 * to enforce loopback-only binding and to report bind errors precisely. */
static int open_listener(unsigned *port_out)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int family;
    memset(&ss, 0, sizeof ss);

    const char *addr = strcmp(cfg.bind, "localhost") == 0 ? "127.0.0.1" : cfg.bind;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        if ((ntohl(s4->sin_addr.s_addr) >> 24) != 127)
            die("--bind %s: only loopback addresses (127.0.0.0/8, ::1) are allowed", cfg.bind);
        family = s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)cfg.port);
        sl = sizeof *s4;
    } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
            die("--bind %s: only loopback addresses (127.0.0.0/8, ::1) are allowed", cfg.bind);
        family = s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)cfg.port);
        sl = sizeof *s6;
    } else
        die("--bind %s: not a numeric IPv4/IPv6 loopback address", cfg.bind);

    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    /* Allows a quick restart while old connections are in TIME_WAIT; on
     * Linux it does not let two live listeners share the port. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        die("setsockopt(SO_REUSEADDR): %s", strerror(errno));
    if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
        die("setsockopt(IPV6_V6ONLY): %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0)
        die("cannot bind %s port %u: %s", cfg.bind, cfg.port, strerror(errno));
    if (listen(fd, 1024) != 0)
        die("listen on %s port %u: %s", cfg.bind, cfg.port, strerror(errno));
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        die("getsockname: %s", strerror(errno));
    *port_out = ntohs(family == AF_INET ? s4->sin_port : s6->sin6_port);
    return fd;
}

static void write_pidfile(void)
{
    char *tmp;
    if (asprintf(&tmp, "%s.tmp.%ld", cfg.pidfile, (long)getpid()) < 0)
        die("out of memory");
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        die("cannot write pidfile %s: %s", tmp, strerror(errno));
    if (fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0) {
        unlink(tmp);
        die("cannot write pidfile %s: %s", tmp, strerror(errno));
    }
    /* rename: readers never see a partially written pidfile */
    if (rename(tmp, cfg.pidfile) != 0) {
        unlink(tmp);
        die("cannot rename %s to %s: %s", tmp, cfg.pidfile, strerror(errno));
    }
    free(tmp);
}

/* Thread-per-connection needs a descriptor per client plus headroom. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            warnx("cannot raise open file limit: %s", strerror(errno));
    }
}

int main(int argc, char **argv)
{
    unsigned port;
    sigset_t sigs;
    int sig;

    parse_args(argc, argv);
    load_fixtures();
    raise_fd_limit();

    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0 ||
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&sleep_cond, &ca) != 0 ||
        pthread_cond_init(&timer_cond, &ca) != 0)
        die("cannot initialise condition variable");
    pthread_condattr_destroy(&ca);

    if (cfg.log_path) {
        log_fp = fopen(cfg.log_path, "a");
        if (log_fp == NULL)
            die("cannot open log file %s: %s", cfg.log_path, strerror(errno));
    }

    int fd = open_listener(&port);

    /* Block termination signals in every thread (MHD threads inherit the
     * mask) so that only sigwait() below receives them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0)
        die("pthread_sigmask failed");
    signal(SIGPIPE, SIG_IGN);

    unsigned flags = MHD_USE_ERROR_LOG | MHD_USE_INTERNAL_POLLING_THREAD;
    if (cfg.threads == 0) {
        /* Each connection gets its own thread: a delayed request sleeps
         * only there.  poll() avoids select()'s FD_SETSIZE limit. */
        flags |= MHD_USE_THREAD_PER_CONNECTION;
        if (MHD_is_feature_supported(MHD_FEATURE_POLL) == MHD_YES)
            flags |= MHD_USE_POLL;
    } else {
        flags |= MHD_ALLOW_SUSPEND_RESUME;
        if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES)
            flags |= MHD_USE_EPOLL;
        else if (MHD_is_feature_supported(MHD_FEATURE_POLL) == MHD_YES)
            flags |= MHD_USE_POLL;
        if (pthread_create(&timers.thread, NULL, timer_main, NULL) != 0)
            die("cannot start timer thread");
        timers.running = true;
    }
    if (strchr(cfg.bind, ':') != NULL)
        flags |= MHD_USE_IPv6;

    /* MHD warns about a pool size of 0/1, so pass it only when used. */
    struct MHD_OptionItem pool_opts[] = {
        { MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)cfg.threads, NULL },
        { MHD_OPTION_END, 0, NULL },
    };
    if (cfg.threads < 2)
        pool_opts[0].option = MHD_OPTION_END;

    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, NULL,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
        MHD_OPTION_ARRAY, pool_opts,
        MHD_OPTION_END);
    if (d == NULL)
        die("cannot start HTTP daemon on %s port %u", cfg.bind, port);

    if (cfg.pidfile)
        write_pidfile();
    fprintf(stderr, PROG " role=%s port=%u ready\n", cfg.role_name, port);

    do {
        if (sigwait(&sigs, &sig) != 0)
            sig = 0;
    } while (sig != SIGTERM && sig != SIGINT);

    pthread_mutex_lock(&sleep_mtx);
    shutting_down = true;
    pthread_cond_broadcast(&sleep_cond);
    pthread_cond_signal(&timer_cond);
    pthread_mutex_unlock(&sleep_mtx);
    if (timers.running)
        pthread_join(timers.thread, NULL);      /* resumes all suspended */
    MHD_stop_daemon(d);

    if (cfg.pidfile)
        unlink(cfg.pidfile);
    if (log_fp)
        fclose(log_fp);
    pthread_mutex_lock(&log_mtx);
    ring_clear_locked();
    pthread_mutex_unlock(&log_mtx);
    free(timers.heap);
    free_fixtures();
    free(cfg.data_dir);
    return 0;
}
