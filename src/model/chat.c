/* chat.c — ChatML and Llama 3 prompt rendering, format recognition from template markers. */
#include "model/chat.h"

#include "core/error.h"
#include "model/unicode.h"

#include <string.h>

static const char *find_mem(const char *h, size_t hn, const char *needle)
{
    size_t nn = strlen(needle);
    if (nn > hn)
        return NULL;
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == needle[0] && memcmp(h + i, needle, nn) == 0)
            return h + i;
    return NULL;
}

shoal_status_t shoal_chat_template_init(shoal_chat_template_t *t, shoal_chat_format_t format)
{
    if (!t)
        return shoal_fail(SHOAL_E_INVALID, "chat: NULL template");
    if (format != SHOAL_CHAT_CHATML && format != SHOAL_CHAT_LLAMA3)
        return shoal_fail(SHOAL_E_INVALID, "chat: format %d is not chatml (1) or llama3 (2)", (int)format);
    memset(t, 0, sizeof *t);
    t->format = format;
    return SHOAL_OK;
}

const char *shoal_chat_format_name(shoal_chat_format_t f)
{
    switch (f) {
    case SHOAL_CHAT_CHATML: return "chatml";
    case SHOAL_CHAT_LLAMA3: return "llama3";
    default: return "unknown";
    }
}

/* A ChatML template that adds a system turn when the conversation lacks one has, after a
 * "!= 'system'" test, a literal '<|im_start|>system\n...<|im_end|>'. The text between is the
 * default system message; Jinja escapes in it (\n, \', \", \\) are undone. */
static void extract_default_system(const char *j, size_t n, shoal_chat_template_t *t)
{
    const char *cond = find_mem(j, n, "!= 'system'");
    if (!cond)
        cond = find_mem(j, n, "!= \"system\"");
    if (!cond)
        return;
    size_t rest = n - (size_t)(cond - j);
    const char *start = find_mem(cond, rest, "<|im_start|>system");
    if (!start)
        return;
    start += strlen("<|im_start|>system");
    size_t left = n - (size_t)(start - j);
    if (left >= 1 && start[0] == '\n') {
        start += 1;
        left -= 1;
    } else if (left >= 2 && start[0] == '\\' && start[1] == 'n') {
        start += 2;
        left -= 2;
    } else {
        return;
    }
    const char *end = find_mem(start, left, "<|im_end|>");
    if (!end)
        return;
    /* the literal must not leave its quotes: a quote without a backslash before it ends it */
    size_t w = 0;
    for (const char *p = start; p < end; p++) {
        char c = *p;
        if (c == '\'' || c == '"')
            return;
        if (c == '\\' && p + 1 < end) {
            char e = *++p;
            c = e == 'n' ? '\n' : e == 't' ? '\t' : e;
        }
        if (w >= sizeof t->default_system)
            return;
        t->default_system[w++] = c;
    }
    t->default_system_len = w;
}

shoal_status_t shoal_chat_template_parse(const char *jinja, size_t len, shoal_chat_template_t *t)
{
    if (!t || (!jinja && len))
        return shoal_fail(SHOAL_E_INVALID, "chat: NULL argument");
    shoal_chat_format_t f = SHOAL_CHAT_UNKNOWN;
    if (find_mem(jinja, len, "<|start_header_id|>"))
        f = SHOAL_CHAT_LLAMA3;
    else if (find_mem(jinja, len, "<|im_start|>"))
        f = SHOAL_CHAT_CHATML;
    if (f == SHOAL_CHAT_UNKNOWN)
        return shoal_fail(SHOAL_E_UNSUPPORTED, "chat: template is neither ChatML nor Llama 3 (no <|im_start|> or "
                                               "<|start_header_id|> marker)");
    shoal_chat_template_init(t, f);
    if (f == SHOAL_CHAT_CHATML)
        extract_default_system(jinja, len, t);
    return SHOAL_OK;
}

shoal_status_t shoal_chat_template_from_gguf(const shoal_gguf_t *g, shoal_chat_template_t *t)
{
    const char *s;
    size_t n;
    shoal_status_t st = shoal_gguf_get_string(g, "tokenizer.chat_template", &s, &n);
    if (st == SHOAL_E_NOT_FOUND)
        return shoal_fail(SHOAL_E_NOT_FOUND, "chat: the model has no tokenizer.chat_template");
    if (st)
        return shoal_fail_wrap(st, "chat");
    return shoal_chat_template_parse(s, n, t);
}

/* ---------------------------------------------------------------- rendering */

typedef struct sink {
    char *out;
    size_t cap, n;
} sink_t;

static void put(sink_t *s, const char *p, size_t n)
{
    if (n && s->n < s->cap) {
        size_t k = s->cap - s->n < n ? s->cap - s->n : n;
        memcpy(s->out + s->n, p, k);
    }
    s->n += n;
}
static void puts_(sink_t *s, const char *p) { put(s, p, strlen(p)); }

/* Jinja's trim is Python's str.strip(): Unicode whitespace, plus the separators U+001C..U+001F. */
static void trim(const char **c, size_t *cl)
{
    const uint8_t *p = (const uint8_t *)*c;
    size_t n = *cl, i = 0, first = n, last_end = 0;
    while (i < n) {
        size_t used;
        uint32_t cp = shoal_utf8_decode(p + i, n - i, &used);
        bool ws = shoal_unicode_class(cp) == SHOAL_UC_SPACE || (cp >= 0x1C && cp <= 0x1F);
        if (!ws) {
            if (first == n)
                first = i;
            last_end = i + used;
        }
        i += used;
    }
    if (first == n) {
        *cl = 0;
        return;
    }
    *c += first;
    *cl = last_end - first;
}

static void put_msg(const shoal_chat_template_t *t, sink_t *s, const char *role, size_t rl, const char *c, size_t cl)
{
    if (t->format == SHOAL_CHAT_CHATML) {
        puts_(s, "<|im_start|>");
        put(s, role, rl);
        puts_(s, "\n");
        put(s, c, cl);
        puts_(s, "<|im_end|>\n");
    } else {
        trim(&c, &cl);
        puts_(s, "<|start_header_id|>");
        put(s, role, rl);
        puts_(s, "<|end_header_id|>\n\n");
        put(s, c, cl);
        puts_(s, "<|eot_id|>");
    }
}

static shoal_status_t check_role(const shoal_chat_msg_t *m, size_t i)
{
    if (!m->role || m->role_len == 0)
        return shoal_fail(SHOAL_E_INVALID, "chat: message %zu has no role", i);
    if (!m->content && m->content_len)
        return shoal_fail(SHOAL_E_INVALID, "chat: message %zu has NULL content", i);
    /* a role is a word: markers or newlines in it would let it forge turns */
    for (size_t k = 0; k < m->role_len; k++) {
        char c = m->role[k];
        if (c == '\n' || c == '\r' || c == '<' || c == '>' || c == '|')
            return shoal_fail(SHOAL_E_INVALID, "chat: role of message %zu contains '%s'", i,
                              c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '<' ? "<" : c == '>' ? ">" : "|");
    }
    return SHOAL_OK;
}

shoal_status_t shoal_chat_render(const shoal_chat_template_t *t, const shoal_chat_msg_t *msgs, size_t n,
                                 bool add_generation_prompt, char *out, size_t cap, size_t *n_out)
{
    if (!t || (!msgs && n) || (!out && cap) || !n_out)
        return shoal_fail(SHOAL_E_INVALID, "chat: NULL argument");
    if (t->format != SHOAL_CHAT_CHATML && t->format != SHOAL_CHAT_LLAMA3)
        return shoal_fail(SHOAL_E_INVALID, "chat: template has no format");
    if (t->default_system_len > sizeof t->default_system)
        return shoal_fail(SHOAL_E_INVALID, "chat: default system message length %zu", t->default_system_len);
    for (size_t i = 0; i < n; i++) {
        shoal_status_t st = check_role(&msgs[i], i);
        if (st)
            return st;
    }
    sink_t s = {out, cap, 0};
    if (t->format == SHOAL_CHAT_LLAMA3 && n > 0) /* the official template puts BOS before the first turn */
        puts_(&s, "<|begin_of_text|>");
    bool has_system = n > 0 && msgs[0].role_len == 6 && memcmp(msgs[0].role, "system", 6) == 0;
    if (!has_system && t->default_system_len && n > 0)
        put_msg(t, &s, "system", 6, t->default_system, t->default_system_len);
    for (size_t i = 0; i < n; i++)
        put_msg(t, &s, msgs[i].role, msgs[i].role_len, msgs[i].content, msgs[i].content_len);
    if (add_generation_prompt)
        puts_(&s, t->format == SHOAL_CHAT_CHATML ? "<|im_start|>assistant\n"
                                                  : "<|start_header_id|>assistant<|end_header_id|>\n\n");
    *n_out = s.n;
    if (s.n > cap)
        return shoal_fail(SHOAL_E_LIMIT, "chat: prompt of %zu bytes does not fit in %zu", s.n, cap);
    return SHOAL_OK;
}
