/* shoal_actor.h — the guest side of a Shoal actor (a reactor module driven by messages).
 *
 * ABI v1, all exports, every value i32:
 *   shoal_actor_init() -> status           once, on a fresh actor (after _initialize);
 *                                            never again after a snapshot restore
 *   shoal_actor_alloc(len) -> ptr           a buffer of len bytes for the next message (0: fail)
 *   shoal_actor_handle(ptr, len) -> n       handle a message; n >= 0 is the reply length,
 *                                            n < 0 an error the host reports
 *   shoal_actor_reply() -> ptr              where the last reply's n bytes are
 *   shoal_stack_pointer_get() -> sp         snapshot access to __stack_pointer, which
 *   shoal_stack_pointer_set(sp)             wasm-ld does not export by default
 *
 * The host copies the message in, calls handle, copies the reply out, and snapshots only
 * between calls. The actor writes shoal_actor_init and shoal_actor_handle itself with
 * SHOAL_ACTOR_EXPORT; this header supplies the rest. Build as a reactor:
 *   clang --target=wasm32-wasi -O2 -mexec-model=reactor -o actor.wasm actor.c
 * The module must not have mutable globals of its own that it does not export (plain C keeps
 * its variables in linear memory, so it has none besides __stack_pointer). */
#ifndef SHOAL_ACTOR_H
#define SHOAL_ACTOR_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define SHOAL_ACTOR_EXPORT(name) __attribute__((export_name(name)))

static char *shoal_actor_msg_buf_;
static size_t shoal_actor_msg_cap_;
static const void *shoal_actor_reply_ptr_;

/* Sets the reply that shoal_actor_reply() hands out; `p` must stay valid until the next message. */
static inline int32_t shoal_actor_set_reply(const void *p, size_t len)
{
    shoal_actor_reply_ptr_ = p;
    return (int32_t)len;
}

SHOAL_ACTOR_EXPORT("shoal_actor_alloc") uint32_t shoal_actor_alloc(uint32_t len)
{
    if (len + 1 > shoal_actor_msg_cap_) {
        char *nb = realloc(shoal_actor_msg_buf_, (size_t)len + 1);
        if (!nb) return 0;
        shoal_actor_msg_buf_ = nb;
        shoal_actor_msg_cap_ = (size_t)len + 1;
    }
    shoal_actor_msg_buf_[len] = '\0'; /* messages arrive NUL-terminated for convenience */
    return (uint32_t)(uintptr_t)shoal_actor_msg_buf_;
}

SHOAL_ACTOR_EXPORT("shoal_actor_reply") uint32_t shoal_actor_reply(void)
{
    return (uint32_t)(uintptr_t)shoal_actor_reply_ptr_;
}

SHOAL_ACTOR_EXPORT("shoal_stack_pointer_get") uint32_t shoal_stack_pointer_get(void)
{
    uint32_t sp;
    __asm__ volatile(".globaltype __stack_pointer, i32\n"
                     "global.get __stack_pointer\n"
                     "local.set %0"
                     : "=r"(sp));
    return sp;
}

SHOAL_ACTOR_EXPORT("shoal_stack_pointer_set") void shoal_stack_pointer_set(uint32_t sp)
{
    __asm__ volatile(".globaltype __stack_pointer, i32\n"
                     "local.get %0\n"
                     "global.set __stack_pointer" ::"r"(sp));
}

#endif
