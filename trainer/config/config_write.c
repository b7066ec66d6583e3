/* config_write: the resolved config as YAML, in the key table's order.  Floats use the
 * shortest text that reads back bit-identical; strings are double-quoted with YAML escapes,
 * so config_load_file reads every value back exactly. */
#include "config.h"
#include "config_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *data;
    size_t len, cap;
    int failed;  /* out of memory */
} text_buffer;

static void append(text_buffer *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append(text_buffer *b, const char *fmt, ...) {
    if (b->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *data = realloc(b->data, cap);
        if (!data) {
            b->failed = 1;
            return;
        }
        b->data = data;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the well-formed UTF-8 sequence at s (shortest form, no surrogates) and its code
 * point, or 0 when the bytes are not UTF-8. */
static size_t utf8_decode(const unsigned char *s, size_t avail, unsigned *cp) {
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] <= 0xdf ? 2 : 0;
    if (n == 0 || n > avail || s[0] > 0xf4) return 0;
    unsigned v = s[0] & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3fu);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10ffff)) || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

/* YAML's printable characters, less the ones that break a line (NEL, LS, PS) and the BOM. */
static int yaml_printable(unsigned cp) {
    return (cp >= 0x20 && cp <= 0x7e) || (cp >= 0xa0 && cp <= 0xd7ff) ||
           (cp >= 0xe000 && cp <= 0xfffd && cp != 0xfeff) || (cp >= 0x10000 && cp <= 0x10ffff);
}

/* A double-quoted YAML scalar.  Bytes that are not UTF-8 (only possible when the caller
 * filled the struct by hand: libyaml refuses them on input) are written as \xNN, which reads
 * back as U+00NN. */
static void append_quoted(text_buffer *b, const char *s, size_t len) {
    append(b, "\"");
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned cp = 0;
        size_t n = utf8_decode(u + i, len - i, &cp);
        if (n == 0) {
            append(b, "\\x%02x", u[i]);
            i++;
            continue;
        }
        if (cp == '"' || cp == '\\') append(b, "\\%c", (char)cp);
        else if (cp == '\n') append(b, "\\n");
        else if (cp == '\t') append(b, "\\t");
        else if (cp == 0x2028 || cp == 0x2029) append(b, "\\u%04x", cp);
        else if (yaml_printable(cp)) append(b, "%.*s", (int)n, s + i);
        else if (cp <= 0xff) append(b, "\\x%02x", cp);
        else if (cp <= 0xffff) append(b, "\\u%04x", cp);
        else append(b, "\\U%08x", cp);
        i += n;
    }
    append(b, "\"");
}

static void append_layer(text_buffer *b, const layer_config *l) {
    char value[32];
    append(b, "    - {type: %s", layer_type_name(l->type));
    unsigned takes = (int)l->type >= 0 && l->type < LAYER_TYPE_COUNT ? config_layer_rules[l->type].takes : 1u;
    for (size_t i = 1; i < config_n_layer_keys; i++) {
        if (!(takes & (1u << i))) continue;
        config_key_format(&config_layer_keys[i], l, value, sizeof value);
        append(b, ", %s: %s", config_layer_keys[i].name, value);
    }
    append(b, "}\n");
}

/* model.init's names need no quotes; anything else (a hand-filled struct) gets them. */
static int is_plain_name(const char *s, size_t size) {
    size_t len = strnlen(s, size);
    if (len == 0 || len == size) return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return 0;
    return 1;
}

char *config_to_yaml(const config *c) {
    text_buffer b = {0};
    append(&b, "# harness run configuration, resolved: every key with its final value\n");
    const char *section = "";
    size_t section_len = 0;
    for (size_t i = 0; i < config_n_keys; i++) {
        const config_key *k = &config_keys[i];
        const char *leaf = strchr(k->name, '.') + 1;
        size_t len = (size_t)(leaf - 1 - k->name);
        if (len != section_len || memcmp(section, k->name, len) != 0) {
            append(&b, "%.*s:\n", (int)len, k->name);
            section = k->name;
            section_len = len;
        }
        if (k->kind == CK_GROUP) {   /* model.gpt: its keys follow, one level deeper */
            append(&b, "  %s:\n", leaf);
            continue;
        }
        const char *sub = strchr(leaf, '.');
        if (sub) append(&b, "    %s:", sub + 1);
        else append(&b, "  %s:", leaf);
        if (k->kind == CK_LAYERS) {
            /* a preset (model.gpt) replaces the list */
            int n = c->n_layers < 0 || c->gpt_layers > 0 ? 0
                    : c->n_layers > CFG_MAX_LAYERS ? CFG_MAX_LAYERS : c->n_layers;
            append(&b, n ? "\n" : " []\n");
            for (int j = 0; j < n; j++) append_layer(&b, &c->layers[j]);
        } else if (k->kind == CK_STRING || (k->kind == CK_NAME && !is_plain_name((const char *)c + k->offset, k->size))) {
            const char *field = (const char *)c + k->offset;
            append(&b, " ");
            append_quoted(&b, field, strnlen(field, k->size));
            append(&b, "\n");
        } else {
            char value[CFG_PATH_MAX];
            config_key_format(k, c, value, sizeof value);
            append(&b, " %s\n", value);
        }
    }
    if (b.failed) {
        free(b.data);
        return NULL;
    }
    return b.data;
}

/* Writes PATH.tmp.PID, syncs it and renames it over path, so readers never see half a file. */
int config_write(const config *c, const char *path, char *err, size_t errlen) {
    char *text = config_to_yaml(c);
    if (!text) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    char tmp[CFG_PATH_MAX + 32];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) {
        free(text);
        snprintf(err, errlen, "%s: path too long", path);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        free(text);
        return -1;
    }
    size_t len = strlen(text), done = 0;
    int rc = 0;
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            rc = -1;
            break;
        }
        done += (size_t)w;
    }
    if (rc == 0 && fsync(fd) != 0) rc = -1;
    int saved_errno = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        saved_errno = errno;
    }
    free(text);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(saved_errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}
