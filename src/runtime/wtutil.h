/* wtutil.h — turning Wasmtime errors and traps into Shoal statuses and messages. */
#ifndef SHOAL_RUNTIME_WTUTIL_H
#define SHOAL_RUNTIME_WTUTIL_H

#include "core/error.h"
#include "runtime/wt.h"
#include "shoal.h"

/* Records "<what>: <wasmtime message>", deletes err, returns s. */
shoal_status_t shoal_wt_error(wasmtime_error_t *err, shoal_status_t s, const char *what);
/* Starts the runtime's epoch ticker (idempotent). */
shoal_status_t shoal_runtime_start_ticker(shoal_runtime_t *rt);
/* Converts a trap into a status + message (timeout / fuel / trap), deleting it. */
shoal_status_t shoal_trap_status(shoal_instance_t *inst, wasm_trap_t *trap, const char *where);

#endif
