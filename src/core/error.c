/* error.c — per-thread last-error message and status names. */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[1024];

shoal_status_t shoal_fail(shoal_status_t s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return s;
}

shoal_status_t shoal_fail_wrap(shoal_status_t s, const char *fmt, ...)
{
    char prev[sizeof g_msg];
    memcpy(prev, g_msg, sizeof prev);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n + 3 < sizeof g_msg && prev[0]) {
        /* Truncating the older message is intended: the newest context comes first. */
        size_t room = sizeof g_msg - (size_t)n;
        snprintf(g_msg + n, room, ": %.*s", (int)(room - 3), prev);
    }
    return s;
}

shoal_status_t shoal_fail_append(shoal_status_t s, const char *fmt, ...)
{
    size_t n = strlen(g_msg);
    if (n + 2 >= sizeof g_msg) return s;
    if (n) {
        g_msg[n++] = '\n';
        g_msg[n] = '\0';
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg + n, sizeof g_msg - n, fmt, ap);
    va_end(ap);
    return s;
}

void shoal_clear_error(void) { g_msg[0] = '\0'; }

const char *shoal_last_error(void) { return g_msg; }

const char *shoal_status_name(shoal_status_t s)
{
    switch (s) {
    case SHOAL_OK: return "SHOAL_OK";
    case SHOAL_E_INVALID: return "SHOAL_E_INVALID";
    case SHOAL_E_NOMEM: return "SHOAL_E_NOMEM";
    case SHOAL_E_IO: return "SHOAL_E_IO";
    case SHOAL_E_FORMAT: return "SHOAL_E_FORMAT";
    case SHOAL_E_WASM: return "SHOAL_E_WASM";
    case SHOAL_E_TRAP: return "SHOAL_E_TRAP";
    case SHOAL_E_TIMEOUT: return "SHOAL_E_TIMEOUT";
    case SHOAL_E_LIMIT: return "SHOAL_E_LIMIT";
    case SHOAL_E_BOUNDS: return "SHOAL_E_BOUNDS";
    case SHOAL_E_DEVICE: return "SHOAL_E_DEVICE";
    case SHOAL_E_UNSUPPORTED: return "SHOAL_E_UNSUPPORTED";
    case SHOAL_E_NOT_FOUND: return "SHOAL_E_NOT_FOUND";
    }
    return "SHOAL_E_?";
}
