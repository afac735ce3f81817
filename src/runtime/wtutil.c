/* wtutil.c — Wasmtime error conversion. */
#include "runtime/wtutil.h"

shoal_status_t shoal_wt_error(wasmtime_error_t *err, shoal_status_t s, const char *what)
{
    wasm_name_t msg;
    wasmtime_error_message(err, &msg);
    /* Error messages are not NUL-terminated. */
    shoal_fail(s, "%s: %.*s", what, (int)msg.size, msg.data);
    wasm_byte_vec_delete(&msg);
    wasmtime_error_delete(err);
    return s;
}
