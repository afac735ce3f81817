/* error.h — internal helpers to fail with a status and a message (see shoal_last_error). */
#ifndef SHOAL_CORE_ERROR_H
#define SHOAL_CORE_ERROR_H

#include "shoal.h"

#if defined(__GNUC__)
#define SHOAL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SHOAL_PRINTF(a, b)
#endif

/* Records a formatted message for this thread and returns s, so callers write
 * `return shoal_fail(SHOAL_E_FORMAT, "gguf: bad magic %x", m);`. */
shoal_status_t shoal_fail(shoal_status_t s, const char *fmt, ...) SHOAL_PRINTF(2, 3);
/* Prefixes the current message: "ctx: <previous message>"; returns s. */
shoal_status_t shoal_fail_wrap(shoal_status_t s, const char *fmt, ...) SHOAL_PRINTF(2, 3);
/* Appends a line to the current message; returns s. */
shoal_status_t shoal_fail_append(shoal_status_t s, const char *fmt, ...) SHOAL_PRINTF(2, 3);
void shoal_clear_error(void);

#endif
