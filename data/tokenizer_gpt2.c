/* GPT-2's byte-level BPE from the standard files.
 *
 *   encoder.json  {"token": id, ...}: each token is a string of code points, one per byte,
 *                 through GPT-2's byte <-> code point map (printable Latin-1 bytes stand for
 *                 themselves, the other 68 bytes are U+0100.. in byte order)
 *   vocab.bpe     "#version: 0.2" then one merge "A B" per line, earlier lines rank first
 *
 * Encoding: the text is cut at every "<|endoftext|>" (the eot id, when encoder.json has that
 * token); each part is split into pieces by the pre-tokenising pattern below (PCRE2 with
 * UTF + Unicode properties, JIT-compiled when available); each piece's bytes start as
 * single-byte tokens and the adjacent pair of lowest rank is merged until no ranked pair is
 * left (ties: leftmost first, which is the same as GPT-2's "merge every occurrence of the
 * best pair").  Pieces up to SHORT_WORD symbols use a linear scan per merge with the pair
 * ranks kept in an array; longer ones a heap of (rank, position) over a linked list, so a
 * long word costs O(n log n), not O(n^2).  Words already seen are served from a cache.
 *
 * Invalid UTF-8: the pattern is compiled with PCRE2_MATCH_INVALID_UTF, so matches never
 * include an invalid byte; each byte between two matches (that is, each byte that is not
 * part of a valid UTF-8 character) becomes its own piece, i.e. its single-byte token.
 * Decoding reproduces the bytes, so decode(encode(x)) == x for any byte string.  (GPT-2's
 * Python code works on decoded strings and has no such case.)
 *
 * Threads: the loaded tables are read-only; each thread gets its own PCRE2 match data,
 * scratch buffers and word cache (a pthread key), so encode may run on several threads. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>

#include "data_internal.h"
#include "tokenizer_internal.h"

/* The pattern of GPT-2's encoder.py. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char eot_text[] = "<|endoftext|>";
#define EOT_LEN (sizeof eot_text - 1)

#define MAX_VOCAB (1 << 24)        /* ids beyond this are refused (hostile files) */
#define SHORT_WORD 48              /* symbols: linear scan below, heap above */
#define CACHE_WORD_MAX 255         /* longest word (bytes) kept in the cache */
#define CACHE_MIN_SLOTS (1u << 14)
#define CACHE_MAX_SLOTS (1u << 20)
#define NO_RANK INT32_MAX

typedef struct gpt2_thread gpt2_thread;

struct tok_gpt2 {
    int32_t byte_id[256];      /* the single-byte tokens */
    /* merges: open addressing, key = (left id << 32 | right id) + 1 (0 = empty slot) */
    uint64_t *mkey;
    int32_t *mrank, *mid;
    uint64_t mmask;
    pcre2_code *re;
    int jit;
    pthread_key_t key;
    int key_ok;
    pthread_mutex_t lock;      /* guards the list of thread states */
    gpt2_thread *threads;
};

/* ---- word cache and per-thread state ---- */

typedef struct {
    uint64_t hash;             /* 0 = empty */
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids;
} cache_slot;

struct gpt2_thread {
    tok_gpt2 *owner;
    gpt2_thread *prev, *next;
    pcre2_match_data *md;
    cache_slot *slots;
    uint32_t mask, used;
    unsigned char *keys;       /* arena of cached words */
    size_t keys_len, keys_cap;
    int32_t *ids;              /* arena of their ids */
    size_t ids_len, ids_cap;
    /* scratch for one word */
    int32_t *sym, *rank, *merged, *prev_i, *next_i;
    uint64_t *heap;
    size_t scratch_cap, heap_cap;
};

static void thread_free(gpt2_thread *th) {
    if (th == NULL) return;
    pcre2_match_data_free(th->md);
    free(th->slots);
    free(th->keys);
    free(th->ids);
    free(th->sym);
    free(th->rank);
    free(th->merged);
    free(th->prev_i);
    free(th->next_i);
    free(th->heap);
    free(th);
}

/* Thread exit: unlink from the tokenizer's list and free. */
static void thread_destructor(void *p) {
    gpt2_thread *th = p;
    tok_gpt2 *g = th->owner;
    pthread_mutex_lock(&g->lock);
    if (th->prev) th->prev->next = th->next;
    else g->threads = th->next;
    if (th->next) th->next->prev = th->prev;
    pthread_mutex_unlock(&g->lock);
    thread_free(th);
}

static gpt2_thread *thread_state(tok_gpt2 *g) {
    gpt2_thread *th = pthread_getspecific(g->key);
    if (th != NULL && th->owner == g) return th;
    th = calloc(1, sizeof *th);
    if (th == NULL) return NULL;
    th->owner = g;
    th->md = pcre2_match_data_create_from_pattern(g->re, NULL);
    th->mask = CACHE_MIN_SLOTS - 1;
    th->slots = calloc(CACHE_MIN_SLOTS, sizeof *th->slots);
    if (th->md == NULL || th->slots == NULL || pthread_setspecific(g->key, th) != 0) {
        thread_free(th);
        return NULL;
    }
    pthread_mutex_lock(&g->lock);
    th->next = g->threads;
    if (g->threads) g->threads->prev = th;
    g->threads = th;
    pthread_mutex_unlock(&g->lock);
    return th;
}

static uint64_t hash_bytes(const unsigned char *p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0xff51afd7ed558ccdULL);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    h = (h ^ v) * 0x94d049bb133111ebULL;
    h ^= h >> 29;
    return h | 1;   /* never 0 (the empty mark) */
}

static const cache_slot *cache_find(const gpt2_thread *th, const unsigned char *w, size_t len,
                                    uint64_t h) {
    for (uint32_t i = (uint32_t)h & th->mask;; i = (i + 1) & th->mask) {
        const cache_slot *s = &th->slots[i];
        if (s->hash == 0) return NULL;
        if (s->hash == h && s->key_len == len && !memcmp(th->keys + s->key_off, w, len)) return s;
    }
}

static void cache_clear(gpt2_thread *th) {
    memset(th->slots, 0, ((size_t)th->mask + 1) * sizeof *th->slots);
    th->used = 0;
    th->keys_len = th->ids_len = 0;
}

/* Doubles the table (rehash) up to CACHE_MAX_SLOTS, then starts over empty. */
static void cache_grow(gpt2_thread *th) {
    uint32_t slots = th->mask + 1;
    cache_slot *ns = slots < CACHE_MAX_SLOTS ? calloc((size_t)slots * 2, sizeof *ns) : NULL;
    if (ns == NULL) {
        cache_clear(th);
        return;
    }
    uint32_t nmask = slots * 2 - 1;
    for (uint32_t i = 0; i < slots; i++) {
        if (th->slots[i].hash == 0) continue;
        uint32_t j = (uint32_t)th->slots[i].hash & nmask;
        while (ns[j].hash != 0) j = (j + 1) & nmask;
        ns[j] = th->slots[i];
    }
    free(th->slots);
    th->slots = ns;
    th->mask = nmask;
}

/* Remembers word -> ids; silently skipped when memory is short (a cache only). */
static void cache_insert(gpt2_thread *th, const unsigned char *w, size_t len, uint64_t h,
                         const int32_t *ids, size_t n) {
    if (len > CACHE_WORD_MAX || n > UINT16_MAX) return;
    if ((th->used + 1) * 4 > (th->mask + 1) * 3) cache_grow(th);
    if (th->keys_len + len > UINT32_MAX || th->ids_len + n > UINT32_MAX) cache_clear(th);
    if (th->keys_len + len > th->keys_cap) {
        size_t c = th->keys_cap ? th->keys_cap * 2 : 1 << 16;
        while (c < th->keys_len + len) c *= 2;
        unsigned char *p = realloc(th->keys, c);
        if (p == NULL) return;
        th->keys = p;
        th->keys_cap = c;
    }
    if (th->ids_len + n > th->ids_cap) {
        size_t c = th->ids_cap ? th->ids_cap * 2 : 1 << 14;
        while (c < th->ids_len + n) c *= 2;
        int32_t *p = realloc(th->ids, c * sizeof *p);
        if (p == NULL) return;
        th->ids = p;
        th->ids_cap = c;
    }
    uint32_t i = (uint32_t)h & th->mask;
    while (th->slots[i].hash != 0) i = (i + 1) & th->mask;
    cache_slot *s = &th->slots[i];
    s->hash = h;
    s->key_off = (uint32_t)th->keys_len;
    s->key_len = (uint16_t)len;
    s->ids_off = (uint32_t)th->ids_len;
    s->n_ids = (uint16_t)n;
    memcpy(th->keys + th->keys_len, w, len);
    memcpy(th->ids + th->ids_len, ids, n * sizeof *ids);
    th->keys_len += len;
    th->ids_len += n;
    th->used++;
}

static int scratch_reserve(gpt2_thread *th, size_t n) {
    if (n <= th->scratch_cap) return 0;
    size_t c = th->scratch_cap ? th->scratch_cap : 256;
    while (c < n) c *= 2;
    int32_t **arrs[5] = {&th->sym, &th->rank, &th->merged, &th->prev_i, &th->next_i};
    for (int a = 0; a < 5; a++) {
        int32_t *p = realloc(*arrs[a], c * sizeof *p);
        if (p == NULL) return -1;
        *arrs[a] = p;
    }
    th->scratch_cap = c;
    return 0;
}

/* ---- the merge table ---- */

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Rank of merging (a, b) and the merged id, or NO_RANK. */
static inline int32_t pair_rank(const tok_gpt2 *g, int32_t a, int32_t b, int32_t *merged) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    for (uint64_t i = mix64(key) & g->mmask;; i = (i + 1) & g->mmask) {
        uint64_t k = g->mkey[i];
        if (k == key) {
            *merged = g->mid[i];
            return g->mrank[i];
        }
        if (k == 0) return NO_RANK;
    }
}

/* A later duplicate line overrides an earlier one, as a Python dict built from the lines
 * does in GPT-2's encoder.py. */
static void pair_insert(tok_gpt2 *g, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint64_t i = mix64(key) & g->mmask;
    while (g->mkey[i] != 0 && g->mkey[i] != key) i = (i + 1) & g->mmask;
    g->mkey[i] = key;
    g->mrank[i] = rank;
    g->mid[i] = merged;
}

/* ---- BPE of one word ---- */

/* Short words: sym[0, n) with the rank of each adjacent pair in rank[]. */
static size_t bpe_short(const tok_gpt2 *g, int32_t *sym, int32_t *rank, int32_t *merged,
                        size_t n) {
    for (size_t i = 0; i + 1 < n; i++) rank[i] = pair_rank(g, sym[i], sym[i + 1], &merged[i]);
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (rank[i] < rank[best]) best = i;
        if (rank[best] == NO_RANK) break;
        sym[best] = merged[best];
        /* drop symbol best+1 and pair best; pairs after it shift down by one */
        memmove(sym + best + 1, sym + best + 2, (n - best - 2) * sizeof *sym);
        memmove(rank + best, rank + best + 1, (n - best - 2) * sizeof *rank);
        memmove(merged + best, merged + best + 1, (n - best - 2) * sizeof *merged);
        n--;
        if (best + 1 < n) rank[best] = pair_rank(g, sym[best], sym[best + 1], &merged[best]);
        if (best > 0) rank[best - 1] = pair_rank(g, sym[best - 1], sym[best], &merged[best - 1]);
    }
    return n;
}

static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = v;
    return top;
}

/* Long words: a linked list of symbols and a heap of (rank << 32 | left position); an entry
 * is stale when its left symbol is gone or the pair there now has another rank. */
static int bpe_long(gpt2_thread *th, const tok_gpt2 *g, size_t n) {
    int32_t *sym = th->sym, *prev = th->prev_i, *next = th->next_i;
    size_t need = 2 * n;
    if (need > th->heap_cap) {
        uint64_t *p = realloc(th->heap, need * sizeof *p);
        if (p == NULL) return -1;
        th->heap = p;
        th->heap_cap = need;
    }
    uint64_t *heap = th->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    int32_t m;
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t r = pair_rank(g, sym[i], sym[i + 1], &m);
        if (r != NO_RANK) heap_push(heap, &hn, (uint64_t)(uint32_t)r << 32 | i);
    }
    while (hn > 0) {
        uint64_t e = heap_pop(heap, &hn);
        int32_t r = (int32_t)(e >> 32), i = (int32_t)(uint32_t)e;
        if (sym[i] < 0 || next[i] < 0) continue;
        int32_t j = next[i];
        if (pair_rank(g, sym[i], sym[j], &m) != r) continue;
        sym[i] = m;
        sym[j] = -1;
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        /* each merge adds at most two entries and removes one: the heap stays below 2n */
        if (prev[i] >= 0) {
            int32_t rp = pair_rank(g, sym[prev[i]], sym[i], &m);
            if (rp != NO_RANK && hn < th->heap_cap)
                heap_push(heap, &hn, (uint64_t)(uint32_t)rp << 32 | (uint32_t)prev[i]);
        }
        if (next[i] >= 0) {
            int32_t rn = pair_rank(g, sym[i], sym[next[i]], &m);
            if (rn != NO_RANK && hn < th->heap_cap)
                heap_push(heap, &hn, (uint64_t)(uint32_t)rn << 32 | (uint32_t)i);
        }
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) sym[k++] = sym[i];
    return (int)k;
}

/* Appends the ids of one pre-tokenised piece. */
static int encode_word(gpt2_thread *th, const tok_gpt2 *g, const unsigned char *w, size_t len,
                       int32_t **ids, size_t *n, size_t *cap) {
    if (len == 1) return tok_push(ids, n, cap, g->byte_id[w[0]]);
    uint64_t h = 0;
    if (len <= CACHE_WORD_MAX) {
        h = hash_bytes(w, len);
        const cache_slot *s = cache_find(th, w, len, h);
        if (s != NULL) {
            if (tok_reserve(ids, n, cap, s->n_ids)) return -1;
            memcpy(*ids + *n, th->ids + s->ids_off, s->n_ids * sizeof **ids);
            *n += s->n_ids;
            return 0;
        }
    }
    if (scratch_reserve(th, len)) return -1;
    for (size_t i = 0; i < len; i++) th->sym[i] = g->byte_id[w[i]];
    size_t k;
    if (len <= SHORT_WORD) {
        k = bpe_short(g, th->sym, th->rank, th->merged, len);
    } else {
        int r = bpe_long(th, g, len);
        if (r < 0) return -1;
        k = (size_t)r;
    }
    if (tok_reserve(ids, n, cap, k)) return -1;
    memcpy(*ids + *n, th->sym, k * sizeof **ids);
    *n += k;
    if (len <= CACHE_WORD_MAX) cache_insert(th, w, len, h, th->sym, k);
    return 0;
}

/* One stretch of text without special tokens. */
static int encode_plain(gpt2_thread *th, const tok_gpt2 *g, const unsigned char *s, size_t len,
                        int32_t **ids, size_t *n, size_t *cap, char *err, size_t errlen) {
    size_t off = 0;
    while (off < len) {
        int rc = g->jit ? pcre2_jit_match(g->re, s, len, off, 0, th->md, NULL)
                        : pcre2_match(g->re, s, len, off, 0, th->md, NULL);
        size_t ms = len, me = len;
        if (rc >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(th->md);
            ms = ov[0];
            me = ov[1];
        } else if (rc != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return data_errorf(err, errlen, "gpt2 tokenizer: pre-tokenising at byte %zu: %s",
                               off, (const char *)msg);
        }
        /* bytes the pattern skipped are not valid UTF-8: one piece each */
        for (; off < ms; off++)
            if (tok_push(ids, n, cap, g->byte_id[s[off]])) goto oom;
        if (me == ms) {   /* the pattern has no empty match; never loop in place */
            if (ms < len && tok_push(ids, n, cap, g->byte_id[s[ms]])) goto oom;
            off = ms + 1;
            continue;
        }
        if (encode_word(th, g, s + ms, me - ms, ids, n, cap)) goto oom;
        off = me;
    }
    return 0;
oom:
    return data_errorf(err, errlen, "gpt2 tokenizer: out of memory");
}

static const void *find_bytes(const void *hay, size_t hn, const void *needle, size_t nn) {
    const unsigned char *h = hay, *end = h + hn;
    while ((size_t)(end - h) >= nn) {
        const unsigned char *p = memchr(h, *(const unsigned char *)needle, (size_t)(end - h) - nn + 1);
        if (p == NULL) return NULL;
        if (!memcmp(p, needle, nn)) return p;
        h = p + 1;
    }
    return NULL;
}

int tok_gpt2_encode(const data_tokenizer *t, const char *text, size_t len, int32_t **ids,
                    size_t *n, size_t *cap, char *err, size_t errlen) {
    tok_gpt2 *g = t->gpt2;
    gpt2_thread *th = thread_state(g);
    if (th == NULL) return data_errorf(err, errlen, "gpt2 tokenizer: out of memory");
    const unsigned char *s = (const unsigned char *)text;
    size_t pos = 0;
    while (pos < len) {
        const unsigned char *sp = t->eot >= 0 ? find_bytes(s + pos, len - pos, eot_text, EOT_LEN)
                                             : NULL;
        size_t end = sp ? (size_t)(sp - s) : len;
        if (encode_plain(th, g, s + pos, end - pos, ids, n, cap, err, errlen)) return -1;
        if (sp == NULL) break;
        if (tok_push(ids, n, cap, (int32_t)t->eot))
            return data_errorf(err, errlen, "gpt2 tokenizer: out of memory");
        pos = end + EOT_LEN;
    }
    return 0;
}

/* ---- loading ---- */

/* GPT-2's map from bytes to code points: printable Latin-1 (33..126, 161..172, 174..255)
 * maps to itself, the rest to 256, 257, ... in byte order. */
static void byte_map(int cp_of_byte[256], int byte_of_cp[324]) {
    for (int i = 0; i < 324; i++) byte_of_cp[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        cp_of_byte[b] = printable ? b : 256 + extra++;
        byte_of_cp[cp_of_byte[b]] = b;
    }
}

static size_t utf8_put(unsigned char *o, int cp) {
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    o[0] = (unsigned char)(0xc0 | cp >> 6);
    o[1] = (unsigned char)(0x80 | (cp & 0x3f));
    return 2;   /* the map's code points are all below U+0800 */
}

/* Decodes one encoder key (valid UTF-8, jansson checks) into bytes; -1 when a code point is
 * outside the byte map (then the token stands for its own UTF-8 text). */
static long decode_key(const unsigned char *k, size_t len, const int byte_of_cp[324],
                       unsigned char *out) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        int cp;
        unsigned char c = k[i];
        if (c < 0x80) { cp = c; i += 1; }
        else if ((c & 0xe0) == 0xc0 && i + 1 < len) { cp = (c & 0x1f) << 6 | (k[i + 1] & 0x3f); i += 2; }
        else return -1;
        if (cp >= 324 || byte_of_cp[cp] < 0) return -1;
        if (out) out[o] = (unsigned char)byte_of_cp[cp];
        o++;
    }
    return (long)o;
}

void tok_gpt2_free(tok_gpt2 *g) {
    if (g == NULL) return;
    if (g->key_ok) {
        /* states of threads still alive; the calling thread's included */
        pthread_mutex_lock(&g->lock);
        gpt2_thread *th = g->threads;
        g->threads = NULL;
        pthread_mutex_unlock(&g->lock);
        pthread_setspecific(g->key, NULL);
        pthread_key_delete(g->key);
        while (th) {
            gpt2_thread *nx = th->next;
            thread_free(th);
            th = nx;
        }
        pthread_mutex_destroy(&g->lock);
    }
    pcre2_code_free(g->re);
    free(g->mkey);
    free(g->mrank);
    free(g->mid);
    free(g);
}

static int load_encoder(data_tokenizer *t, json_t *root, const char *name, char *err,
                        size_t errlen) {
    int cp_of_byte[256], byte_of_cp[324];
    byte_map(cp_of_byte, byte_of_cp);
    if (!json_is_object(root) || json_object_size(root) == 0)
        return data_errorf(err, errlen, "%s: expected a JSON object {\"token\": id, ...}", name);
    const char *key;
    json_t *val;
    int64_t max_id = -1;
    json_object_foreach(root, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || id >= MAX_VOCAB)
            return data_errorf(err, errlen, "%s: token \"%.40s\" needs an integer id in [0, %d)",
                               name, key, MAX_VOCAB);
        if (id > max_id) max_id = id;
    }
    int64_t v = max_id + 1;
    t->vocab_size = v;
    t->off = calloc((size_t)v + 1, sizeof *t->off);
    t->present = calloc((size_t)v, 1);
    size_t *lens = calloc((size_t)v, sizeof *lens);
    if (t->off == NULL || t->present == NULL || lens == NULL) {
        free(lens);
        return data_errorf(err, errlen, "%s: out of memory for %lld tokens", name, (long long)v);
    }
    json_object_foreach(root, key, val) {
        json_int_t id = json_integer_value(val);
        size_t klen = json_object_iter_key_len(json_object_key_to_iter(key));
        if (t->present[id]) {
            free(lens);
            return data_errorf(err, errlen, "%s: id %lld is given to two tokens", name,
                               (long long)id);
        }
        t->present[id] = 1;
        long d = decode_key((const unsigned char *)key, klen, byte_of_cp, NULL);
        lens[id] = d < 0 ? klen : (size_t)d;
    }
    for (int64_t i = 0; i < v; i++) t->off[i + 1] = t->off[i] + lens[i];
    free(lens);
    t->blob = malloc(t->off[v] ? t->off[v] : 1);
    if (t->blob == NULL) return data_errorf(err, errlen, "%s: out of memory", name);
    json_object_foreach(root, key, val) {
        json_int_t id = json_integer_value(val);
        size_t klen = json_object_iter_key_len(json_object_key_to_iter(key));
        if (decode_key((const unsigned char *)key, klen, byte_of_cp, t->blob + t->off[id]) < 0)
            memcpy(t->blob + t->off[id], key, klen);
    }
    tok_gpt2 *g = t->gpt2;
    for (int b = 0; b < 256; b++) {
        unsigned char u[2];
        size_t ul = utf8_put(u, cp_of_byte[b]);
        json_t *e = json_object_getn(root, (const char *)u, ul);
        if (e == NULL)
            return data_errorf(err, errlen, "%s: no token for byte 0x%02x (\"%.*s\"): a byte-level "
                               "vocabulary has all 256", name, b, (int)ul, (const char *)u);
        g->byte_id[b] = (int32_t)json_integer_value(e);
    }
    json_t *e = json_object_get(root, eot_text);
    t->eot = e ? (int64_t)json_integer_value(e) : -1;
    return 0;
}

static int load_merges(tok_gpt2 *g, json_t *root, const char *bpe, size_t len, const char *name,
                       char *err, size_t errlen) {
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += bpe[i] == '\n';
    uint64_t slots = 16;
    while (slots < 2 * (uint64_t)lines) slots *= 2;
    g->mmask = slots - 1;
    g->mkey = calloc(slots, sizeof *g->mkey);
    g->mrank = malloc(slots * sizeof *g->mrank);
    g->mid = malloc(slots * sizeof *g->mid);
    char *joined = malloc(len + 1);
    if (g->mkey == NULL || g->mrank == NULL || g->mid == NULL || joined == NULL) {
        free(joined);
        return data_errorf(err, errlen, "%s: out of memory for %zu merges", name, lines);
    }
    int32_t rank = 0;
    size_t lineno = 0;
    int rc = 0;
    for (size_t pos = 0; pos < len && rc == 0;) {
        const char *line = bpe + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + 1;
        lineno++;
        if (ll > 0 && line[ll - 1] == '\r') ll--;
        if (ll == 0) continue;
        if (lineno == 1 && ll >= 8 && !memcmp(line, "#version", 8)) continue;
        const char *sp = memchr(line, ' ', ll);
        size_t la = sp ? (size_t)(sp - line) : 0, lb = sp ? ll - la - 1 : 0;
        if (sp == NULL || la == 0 || lb == 0 || memchr(sp + 1, ' ', lb) != NULL) {
            rc = data_errorf(err, errlen, "%s: line %zu: expected a merge \"A B\" (two tokens, "
                             "one space), got \"%.*s\"", name, lineno, (int)(ll < 60 ? ll : 60), line);
            break;
        }
        json_t *a = json_object_getn(root, line, la), *b = json_object_getn(root, sp + 1, lb);
        memcpy(joined, line, la);
        memcpy(joined + la, sp + 1, lb);
        json_t *ab = json_object_getn(root, joined, la + lb);
        const char *missing = a == NULL ? "the first token" : b == NULL ? "the second token"
                              : ab == NULL ? "the merged token" : NULL;
        if (missing) {
            rc = data_errorf(err, errlen, "%s: line %zu: %s of \"%.*s\" is not in the vocabulary "
                             "(encoder.json)", name, lineno, missing, (int)(ll < 60 ? ll : 60), line);
            break;
        }
        pair_insert(g, (int32_t)json_integer_value(a), (int32_t)json_integer_value(b), rank++,
                    (int32_t)json_integer_value(ab));
    }
    free(joined);
    return rc;
}

static int compile_pattern(tok_gpt2 *g, char *err, size_t errlen) {
    int code;
    PCRE2_SIZE where;
    g->re = pcre2_compile((PCRE2_SPTR)gpt2_pattern, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &where, NULL);
    if (g->re == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return data_errorf(err, errlen, "gpt2 tokenizer: PCRE2 rejects the pattern at %zu: %s",
                           (size_t)where, (const char *)msg);
    }
    g->jit = pcre2_jit_compile(g->re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

int tok_gpt2_from_memory(const char *enc, size_t enc_len, const char *enc_name, const char *bpe,
                         size_t bpe_len, const char *bpe_name, data_tokenizer **out, char *err,
                         size_t errlen) {
    *out = NULL;
    data_tokenizer *t = calloc(1, sizeof *t);
    if (t == NULL || (t->gpt2 = calloc(1, sizeof *t->gpt2)) == NULL) {
        free(t);
        return data_errorf(err, errlen, "%s: out of memory", enc_name);
    }
    t->kind = TOK_GPT2;
    tok_gpt2 *g = t->gpt2;
    json_error_t jerr;
    json_t *root = json_loadb(enc, enc_len, JSON_REJECT_DUPLICATES, &jerr);
    int rc = -1;
    if (root == NULL) {
        data_errorf(err, errlen, "%s: not valid JSON (line %d, column %d): %s", enc_name,
                    jerr.line, jerr.column, jerr.text);
        goto done;
    }
    if (load_encoder(t, root, enc_name, err, errlen) ||
        load_merges(g, root, bpe, bpe_len, bpe_name, err, errlen) ||
        compile_pattern(g, err, errlen))
        goto done;
    if (pthread_mutex_init(&g->lock, NULL) != 0 ||
        pthread_key_create(&g->key, thread_destructor) != 0) {
        data_errorf(err, errlen, "gpt2 tokenizer: cannot create its thread key");
        goto done;
    }
    g->key_ok = 1;
    t->encoder_json = malloc(enc_len ? enc_len : 1);
    t->vocab_bpe = malloc(bpe_len ? bpe_len : 1);
    if (t->encoder_json == NULL || t->vocab_bpe == NULL) {
        data_errorf(err, errlen, "%s: out of memory", enc_name);
        goto done;
    }
    memcpy(t->encoder_json, enc, enc_len);
    memcpy(t->vocab_bpe, bpe, bpe_len);
    t->encoder_json_len = enc_len;
    t->vocab_bpe_len = bpe_len;
    rc = 0;
done:
    if (root) json_decref(root);
    if (rc) data_tokenizer_free(t);
    else *out = t;
    return rc;
}
