/* counter_actor.c — an example actor for the snapshot tests: it keeps a counter, a running
 * hash and a log of every message in linear memory, a pseudo-random generator seeded at init,
 * and an exported mutable global. Replies depend on all of it, so any state lost in a
 * snapshot shows up as a different reply.
 * SHOAL_GUEST_REACTOR */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "shoal_actor.h"

/* An exported mutable global (i64): snapshots must carry its value. Declared in assembly
 * because C has no way to place a variable in a wasm global. */
__asm__(".globaltype actor_generation, i64\n"
        ".globl actor_generation\n"
        "actor_generation:\n"
        ".export_name actor_generation, actor_generation\n");

static uint64_t generation(void)
{
    uint64_t g;
    __asm__ volatile("global.get actor_generation\n local.set %0" : "=r"(g));
    return g;
}
static void set_generation(uint64_t g) { __asm__ volatile("local.get %0\n global.set actor_generation" ::"r"(g)); }

static struct {
    uint32_t count;
    uint64_t rng, hash;
    size_t log_len;
    char *log; /* heap: every message so far, one per line */
    char *big[16]; /* "big N" blocks: mostly zero pages, for the sparse-memory test */
    unsigned nbig;
} st;

static char reply[512];

static uint64_t next_rand(void)
{
    st.rng ^= st.rng << 13, st.rng ^= st.rng >> 7, st.rng ^= st.rng << 17;
    return st.rng;
}

SHOAL_ACTOR_EXPORT("shoal_actor_init") int32_t actor_init(void)
{
    st.rng = 0x9e3779b97f4a7c15ull;
    st.hash = 1469598103934665603ull;
    set_generation(1);
    return 0;
}

SHOAL_ACTOR_EXPORT("shoal_actor_handle") int32_t actor_handle(const char *msg, uint32_t len)
{
    if (len == 5 && !memcmp(msg, "crash", 5)) __builtin_trap();
    if (len == 4 && !memcmp(msg, "spin", 4)) { /* never returns: for --timeout tests */
        volatile char frame[256]; /* a real stack frame, so the stack pointer is moved */
        for (unsigned i = 0;; i++) frame[i % 256] = (char)i;
    }
    if (len >= 4 && !memcmp(msg, "big ", 4)) { /* grow memory: touches a few pages far apart */
        size_t n = (size_t)strtoul(msg + 4, NULL, 10);
        char *p = malloc(n);
        if (!p) return -1;
        memset(p, 0, n);
        for (size_t i = 0; i < n; i += 65536) p[i] = (char)(i >> 16 | 1);
        if (st.nbig < 16) st.big[st.nbig++] = p; /* kept: it is state */
    }
    char *nl = realloc(st.log, st.log_len + len + 1);
    if (!nl) return -1;
    st.log = nl;
    memcpy(st.log + st.log_len, msg, len);
    st.log[st.log_len + len] = '\n';
    st.log_len += len + 1;
    for (uint32_t i = 0; i < len; i++) st.hash = (st.hash ^ (uint8_t)msg[i]) * 1099511628211ull;
    st.count++;
    set_generation(generation() + st.count);
    int n = snprintf(reply, sizeof reply, "#%u gen=%llu hash=%016llx rand=%016llx log=%zu echo=%.*s", st.count,
                     (unsigned long long)generation(), (unsigned long long)st.hash, (unsigned long long)next_rand(),
                     st.log_len, (int)(len > 64 ? 64 : len), msg);
    return shoal_actor_set_reply(reply, (size_t)n);
}
