/* test_nn_snapshot.c — the nn layer's snapshot sections: a wasi-nn stream and a token-level
 * session saved mid-generation and loaded into a fresh instance continue with exactly the
 * tokens the original produces; corrupt or foreign blobs are refused with nothing changed. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/runtime_impl.h"
#include "shoal.h"

typedef struct fixture {
    shoal_runtime_t *rt;
    shoal_module_t *mod;
} fixture;

static char model_path[4096], guest_path[4096];

static int setup(void **state)
{
    const char *deps = getenv("SHOAL_DEPS"), *guests = getenv("SHOAL_GUESTS");
    if (!deps || !guests) return -1;
    snprintf(model_path, sizeof model_path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", deps);
    snprintf(guest_path, sizeof guest_path, "%s/nn_steps.wasm", guests);
    fixture *f = calloc(1, sizeof *f);
    shoal_runtime_config_t cfg;
    shoal_runtime_config_init(&cfg);
    cfg.threads = 2;
    if (shoal_runtime_new(&cfg, &f->rt) != SHOAL_OK) return -1;
    if (shoal_runtime_preload_model(f->rt, "default", model_path) != SHOAL_OK) return -1;
    if (shoal_module_load(f->rt, guest_path, &f->mod) != SHOAL_OK) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    shoal_module_delete(f->mod);
    shoal_runtime_delete(f->rt);
    free(f);
    return 0;
}

static shoal_instance_t *start(fixture *f)
{
    shoal_instance_config_t ic;
    shoal_instance_config_init(&ic);
    ic.inherit_stdio = false;
    shoal_instance_t *inst = NULL;
    assert_int_equal(shoal_instance_new(f->rt, f->mod, &ic, &inst), SHOAL_OK);
    shoal_instance_call_i32(inst, "_initialize", NULL, 0, NULL, 0);
    int32_t r = -1;
    assert_int_equal(shoal_instance_call_i32(inst, "setup", NULL, 0, &r, 1), SHOAL_OK);
    assert_int_equal(r, 0);
    return inst;
}

static int32_t call0(shoal_instance_t *inst, const char *fn)
{
    int32_t r = 0;
    assert_int_equal(shoal_instance_call_i32(inst, fn, NULL, 0, &r, 1), SHOAL_OK);
    return r;
}

static void save(shoal_instance_t *inst, int slot, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    assert_non_null(inst->ext[slot]);
    assert_non_null(inst->ext_ops[slot]->save);
    assert_int_equal(inst->ext_ops[slot]->save(inst->ext[slot], buf, len), SHOAL_OK);
    assert_true(*len > 0);
}

static void test_continuation_is_identical(void **state)
{
    fixture *f = *state;
    shoal_instance_t *a = start(f);
    for (int i = 0; i < 3; i++) {
        assert_true(call0(a, "step_nn") > 0);
        assert_true(call0(a, "step_llm") >= 0);
    }
    uint8_t *nn_blob, *llm_blob;
    size_t nn_len, llm_len;
    save(a, SHOAL_EXT_NN, &nn_blob, &nn_len);
    save(a, SHOAL_EXT_LLM, &llm_blob, &llm_len);
    int32_t pending = call0(a, "get_pending");
    int32_t want_nn[6], want_llm[6];
    for (int i = 0; i < 6; i++) {
        want_nn[i] = call0(a, "step_nn");
        want_llm[i] = call0(a, "step_llm");
        assert_true(want_nn[i] > 0 && want_llm[i] >= 0);
    }

    /* A fresh actor, at its own first step, takes the saved state and continues as `a` did. */
    shoal_instance_t *b = start(f);
    assert_true(call0(b, "step_nn") > 0); /* its own stream is in progress: load must replace it */
    assert_int_equal(b->ext_ops[SHOAL_EXT_NN]->load(b, nn_blob, nn_len), SHOAL_OK);
    assert_int_equal(b->ext_ops[SHOAL_EXT_LLM]->load(b, llm_blob, llm_len), SHOAL_OK);
    assert_int_equal(shoal_instance_call_i32(b, "set_pending", &pending, 1, NULL, 0), SHOAL_OK);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(call0(b, "step_nn"), want_nn[i]);
        assert_int_equal(call0(b, "step_llm"), want_llm[i]);
    }

    /* Refusals: truncations, a flipped magic, a model this runtime does not have. Each leaves
     * the instance's state as it was (the stream keeps going). */
    shoal_instance_t *c = start(f);
    void *before = c->ext[SHOAL_EXT_NN];
    for (size_t cut = 1; cut < nn_len; cut += nn_len / 7 + 1)
        assert_int_equal(c->ext_ops[SHOAL_EXT_NN]->load(c, nn_blob, cut), SHOAL_E_FORMAT);
    for (size_t cut = 1; cut < llm_len; cut += llm_len / 7 + 1)
        assert_int_equal(c->ext_ops[SHOAL_EXT_LLM]->load(c, llm_blob, cut), SHOAL_E_FORMAT);
    nn_blob[0] ^= 0xFF;
    assert_int_equal(c->ext_ops[SHOAL_EXT_NN]->load(c, nn_blob, nn_len), SHOAL_E_FORMAT);
    nn_blob[0] ^= 0xFF;
    /* the model name follows the magic, the graph count and the handle: "default" -> "dEfault" */
    uint8_t *name = memmem(nn_blob, nn_len, "default", 7);
    assert_non_null(name);
    name[1] = 'E';
    assert_int_equal(c->ext_ops[SHOAL_EXT_NN]->load(c, nn_blob, nn_len), SHOAL_E_NOT_FOUND);
    assert_ptr_equal(c->ext[SHOAL_EXT_NN], before);
    assert_true(call0(c, "step_nn") > 0);

    free(nn_blob);
    free(llm_blob);
    shoal_instance_delete(a);
    shoal_instance_delete(b);
    shoal_instance_delete(c);
}

int main(void)
{
    const char *deps = getenv("SHOAL_DEPS");
    char p[4096];
    snprintf(p, sizeof p, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", deps ? deps : ".");
    FILE *fp = fopen(p, "rb");
    if (!fp) {
        printf("skip: %s missing\n", p);
        return 0;
    }
    fclose(fp);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_continuation_is_identical),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
