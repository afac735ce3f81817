/* nn_config.c — parses the JSON configuration of wasi-nn GGML graphs (set by
 * load_by_name_with_config or set_input index 1). */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "nn/nn_config.h"
#include "nn/wasi_nn_abi.h"

void nn_config_defaults(nn_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->n_predict = -1;
    c->batch_size = 512;
    c->temp = 0.8f;
    c->top_p = 0.95f;
    c->repeat_penalty = 1.0f;
    c->n_gpu_layers = NN_GPU_LAYERS_UNSET;
    c->target = SHOAL_DEVICE_AUTO;
}

/* An integer-valued JSON number in [lo, hi] (reals with an integral value are accepted: some
 * bindings serialise every number as a double). */
static bool get_int(json_t *v, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    double d;
    if (json_is_integer(v)) d = (double)json_integer_value(v);
    else if (json_is_real(v)) d = json_real_value(v);
    else {
        shoal_fail(SHOAL_E_INVALID, "wasi-nn config: \"%s\" must be an integer", key);
        return false;
    }
    if (d != floor(d) || d < (double)lo || d > (double)hi) {
        shoal_fail(SHOAL_E_INVALID, "wasi-nn config: \"%s\" must be an integer in [%lld, %lld] (got %g)", key,
                   (long long)lo, (long long)hi, d);
        return false;
    }
    *out = json_is_integer(v) ? (int64_t)json_integer_value(v) : (int64_t)d;
    return true;
}

static bool get_float(json_t *v, const char *key, double lo, double hi, bool lo_open, float *out)
{
    if (!json_is_number(v)) {
        shoal_fail(SHOAL_E_INVALID, "wasi-nn config: \"%s\" must be a number", key);
        return false;
    }
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi) || (lo_open && d == lo)) {
        shoal_fail(SHOAL_E_INVALID, "wasi-nn config: \"%s\" must lie in %s%g, %g] (got %g)", key, lo_open ? "(" : "[",
                   lo, hi, d);
        return false;
    }
    *out = (float)d;
    return true;
}

static bool get_bool(json_t *v, const char *key, bool *out)
{
    if (!json_is_boolean(v)) {
        shoal_fail(SHOAL_E_INVALID, "wasi-nn config: \"%s\" must be true or false", key);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

int nn_config_apply(nn_config_t *c, const char *json, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        if (root) json_decref(root);
        shoal_fail(SHOAL_E_FORMAT, "wasi-nn config: not a JSON object (%s)", root ? "another JSON value" : jerr.text);
        return NN_ERR_INVALID_ENCODING;
    }
    nn_config_t n = *c;
    bool ok = true;
    int64_t i;
    json_t *v;
    if (ok && (v = json_object_get(root, "ctx-size")) && (ok = get_int(v, "ctx-size", 0, 1 << 20, &i))) n.ctx_size = (int)i;
    if (ok && (v = json_object_get(root, "n-predict")) && (ok = get_int(v, "n-predict", -2, INT32_MAX, &i)))
        n.n_predict = i;
    if (ok && (v = json_object_get(root, "batch-size")) && (ok = get_int(v, "batch-size", 1, 1 << 16, &i)))
        n.batch_size = (int)i;
    if (ok && (v = json_object_get(root, "ubatch-size")) && (ok = get_int(v, "ubatch-size", 1, 1 << 16, &i)))
        n.batch_size = (int)i;
    if (ok && (v = json_object_get(root, "threads")) && (ok = get_int(v, "threads", 0, 1024, &i))) n.threads = (int)i;
    if (ok && (v = json_object_get(root, "n-gpu-layers")) && (ok = get_int(v, "n-gpu-layers", -1, INT32_MAX, &i)))
        n.n_gpu_layers = i;
    if (ok && (v = json_object_get(root, "seed")) && (ok = get_int(v, "seed", -1, INT64_MAX, &i)))
        n.seed = i < 0 ? 0xFFFFFFFFu : (uint64_t)i; /* llama.cpp's "default seed" spelling */
    if (ok && (v = json_object_get(root, "temp"))) ok = get_float(v, "temp", 0, 100, false, &n.temp);
    if (ok && (v = json_object_get(root, "top-p"))) ok = get_float(v, "top-p", 0, 1, true, &n.top_p);
    if (ok && (v = json_object_get(root, "repeat-penalty")))
        ok = get_float(v, "repeat-penalty", 0, 100, true, &n.repeat_penalty);
    if (ok && (v = json_object_get(root, "enable-log"))) ok = get_bool(v, "enable-log", &n.enable_log);
    if (ok && (v = json_object_get(root, "stream-stdout"))) ok = get_bool(v, "stream-stdout", &n.stream_stdout);
    if (ok && (v = json_object_get(root, "reverse-prompt"))) {
        if (!json_is_string(v) || json_string_length(v) > NN_REVERSE_PROMPT_MAX) {
            shoal_fail(SHOAL_E_INVALID, "wasi-nn config: \"reverse-prompt\" must be a string of at most %d bytes",
                       NN_REVERSE_PROMPT_MAX);
            ok = false;
        } else {
            n.reverse_len = json_string_length(v);
            memcpy(n.reverse_prompt, json_string_value(v), n.reverse_len);
            n.reverse_prompt[n.reverse_len] = '\0';
        }
    }
    json_decref(root);
    if (!ok) return NN_ERR_INVALID_ARGUMENT;
    *c = n;
    return NN_ERR_SUCCESS;
}
