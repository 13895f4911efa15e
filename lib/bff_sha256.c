/*
 * SHA-256 (FIPS 180-4), written from the standard for mod_bff; public
 * domain. APR-util 1.6 offers MD5 and SHA-1 only, and cache keys and
 * ETags need a hash whose collisions nobody can construct.
 */
#include <string.h>

#include "bff_cache.h"

static const apr_uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define CH(x, y, z)  (((x) & (y)) ^ (~(x) & (z)))
#define MAJ(x, y, z) (((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))
#define S0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define S1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define s0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define s1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))

static void block(apr_uint32_t h[8], const unsigned char *b)
{
    apr_uint32_t w[64], a, bb, c, d, e, f, g, hh, t1, t2;
    int i;

    for (i = 0; i < 16; i++) {
        w[i] = (apr_uint32_t)b[4 * i] << 24 | (apr_uint32_t)b[4 * i + 1] << 16
               | (apr_uint32_t)b[4 * i + 2] << 8 | (apr_uint32_t)b[4 * i + 3];
    }
    for (; i < 64; i++) {
        w[i] = s1(w[i - 2]) + w[i - 7] + s0(w[i - 15]) + w[i - 16];
    }
    a = h[0]; bb = h[1]; c = h[2]; d = h[3];
    e = h[4]; f = h[5]; g = h[6]; hh = h[7];
    for (i = 0; i < 64; i++) {
        t1 = hh + S1(e) + CH(e, f, g) + K[i] + w[i];
        t2 = S0(a) + MAJ(a, bb, c);
        hh = g; g = f; f = e; e = d + t1;
        d = c; c = bb; bb = a; a = t1 + t2;
    }
    h[0] += a; h[1] += bb; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

void bff_sha256_init(bff_sha256_t *c)
{
    static const apr_uint32_t iv[8] = {
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
    };

    memcpy(c->h, iv, sizeof(iv));
    c->nbytes = 0;
    c->nbuf = 0;
}

void bff_sha256_update(bff_sha256_t *c, const void *data, apr_size_t n)
{
    const unsigned char *d = data;

    c->nbytes += n;
    if (c->nbuf) {
        apr_size_t take = 64 - c->nbuf < n ? 64 - c->nbuf : n;
        memcpy(c->buf + c->nbuf, d, take);
        c->nbuf += take;
        d += take;
        n -= take;
        if (c->nbuf < 64) {
            return;
        }
        block(c->h, c->buf);
        c->nbuf = 0;
    }
    for (; n >= 64; d += 64, n -= 64) {
        block(c->h, d);
    }
    if (n) {
        memcpy(c->buf, d, n);
        c->nbuf = n;
    }
}

void bff_sha256_final(unsigned char out[32], bff_sha256_t *c)
{
    apr_uint64_t bits = c->nbytes * 8;
    int i;

    c->buf[c->nbuf++] = 0x80;
    if (c->nbuf > 56) {
        memset(c->buf + c->nbuf, 0, 64 - c->nbuf);
        block(c->h, c->buf);
        c->nbuf = 0;
    }
    memset(c->buf + c->nbuf, 0, 56 - c->nbuf);
    for (i = 0; i < 8; i++) {
        c->buf[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
    }
    block(c->h, c->buf);
    for (i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(c->h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
        out[4 * i + 3] = (unsigned char)c->h[i];
    }
    memset(c, 0, sizeof(*c));
}

void bff_sha256(unsigned char out[32], const void *data, apr_size_t n)
{
    bff_sha256_t c;

    bff_sha256_init(&c);
    bff_sha256_update(&c, data, n);
    bff_sha256_final(out, &c);
}
