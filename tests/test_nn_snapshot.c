/* test_nn_snapshot.c — the nn layer's snapshot sections: a wasi-nn stream and a token-level
 * session saved mid-generation and loaded into a fresh instance continue with exactly the
 * tokens the original produces; the KV rows inside are a safetensors blob bound to the model's
 * SHA-256; corrupt, old-version or foreign blobs (another model under the same name, differing
 * in one weight byte) are refused with nothing changed. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/sha256.h"
#include "model/gguf.h"
#include "nn/nn_model.h"
#include "nn/nn_snap.h"
#include "runtime/runtime_impl.h"
#include "shoal.h"
#include "snapshot/safetensors.h"

typedef struct fixture {
    shoal_runtime_t *rt;
    shoal_module_t *mod;
} fixture;

static char model_path[4096], guest_path[4096];

static shoal_status_t fixture_new(const char *model, fixture *f)
{
    shoal_runtime_config_t cfg;
    shoal_runtime_config_init(&cfg);
    cfg.threads = 2;
    shoal_status_t st = shoal_runtime_new(&cfg, &f->rt);
    if (st == SHOAL_OK) st = shoal_runtime_preload_model(f->rt, "default", model);
    if (st == SHOAL_OK) st = shoal_module_load(f->rt, guest_path, &f->mod);
    return st;
}

static int setup(void **state)
{
    const char *deps = getenv("SHOAL_DEPS"), *guests = getenv("SHOAL_GUESTS");
    if (!deps || !guests) return -1;
    snprintf(model_path, sizeof model_path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", deps);
    snprintf(guest_path, sizeof guest_path, "%s/nn_steps.wasm", guests);
    fixture *f = calloc(1, sizeof *f);
    if (!f || fixture_new(model_path, f) != SHOAL_OK) return -1;
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
    assert_int_equal(b->ext_ops[SHOAL_EXT_NN]->load(b, nn_blob, nn_len, NULL), SHOAL_OK);
    assert_int_equal(b->ext_ops[SHOAL_EXT_LLM]->load(b, llm_blob, llm_len, NULL), SHOAL_OK);
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
        assert_int_equal(c->ext_ops[SHOAL_EXT_NN]->load(c, nn_blob, cut, NULL), SHOAL_E_FORMAT);
    for (size_t cut = 1; cut < llm_len; cut += llm_len / 7 + 1)
        assert_int_equal(c->ext_ops[SHOAL_EXT_LLM]->load(c, llm_blob, cut, NULL), SHOAL_E_FORMAT);
    nn_blob[0] ^= 0xFF;
    assert_int_equal(c->ext_ops[SHOAL_EXT_NN]->load(c, nn_blob, nn_len, NULL), SHOAL_E_FORMAT);
    nn_blob[0] ^= 0xFF;
    /* the model name follows the magic, the graph count and the handle: "default" -> "dEfault" */
    uint8_t *name = memmem(nn_blob, nn_len, "default", 7);
    assert_non_null(name);
    name[1] = 'E';
    assert_int_equal(c->ext_ops[SHOAL_EXT_NN]->load(c, nn_blob, nn_len, NULL), SHOAL_E_NOT_FOUND);
    assert_ptr_equal(c->ext[SHOAL_EXT_NN], before);
    assert_true(call0(c, "step_nn") > 0);

    free(nn_blob);
    free(llm_blob);
    shoal_instance_delete(a);
    shoal_instance_delete(b);
    shoal_instance_delete(c);
}

/* The 16-hex-digit prefix of the preloaded model's hash, as refusals print it. */
static void model_hash16(shoal_runtime_t *rt, char out[17])
{
    const shoal_nn_model_t *m = shoal_nn_model_find(rt, "default", 7);
    assert_non_null(m);
    char hex[65];
    shoal_hex(m->sha256, 32, hex);
    memcpy(out, hex, 16);
    out[16] = '\0';
}

/* A copy of the model in $TMPDIR with one bit of one weight flipped: the middle byte of the
 * middle tensor's data, well away from the header. */
static void write_flipped_model(char *path, size_t cap)
{
    shoal_gguf_t *g = NULL;
    assert_int_equal(shoal_gguf_open(model_path, &g), SHOAL_OK);
    const shoal_gguf_tensor_t *t = shoal_gguf_tensor_at(g, shoal_gguf_tensor_count(g) / 2);
    assert_non_null(t);
    uint64_t at = t->file_offset + t->nbytes / 2;
    assert_true(at >= shoal_gguf_data_offset(g) && at < shoal_gguf_file_size(g));
    const char *tmp = getenv("TMPDIR");
    snprintf(path, cap, "%s/nnsnap-flipped-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "wb");
    assert_non_null(fp);
    const uint8_t *base = shoal_gguf_base(g);
    uint8_t flipped = base[at] ^ 0x01;
    size_t n = (size_t)shoal_gguf_file_size(g);
    assert_int_equal(fwrite(base, 1, (size_t)at, fp), (size_t)at);
    assert_int_equal(fwrite(&flipped, 1, 1, fp), 1);
    assert_int_equal(fwrite(base + at + 1, 1, n - (size_t)at - 1, fp), n - (size_t)at - 1);
    assert_int_equal(fclose(fp), 0);
    shoal_gguf_close(g);
}

/* Saved with the real model, restored into a runtime whose "default" differs in one bit: both
 * sections are refused, naming the model and both hashes, and the target keeps running. */
static void test_refuses_other_model_bytes(void **state)
{
    fixture *f = *state;
    shoal_instance_t *a = start(f);
    assert_true(call0(a, "step_nn") > 0);
    assert_true(call0(a, "step_llm") >= 0);
    uint8_t *nn_blob, *llm_blob;
    size_t nn_len, llm_len;
    save(a, SHOAL_EXT_NN, &nn_blob, &nn_len);
    save(a, SHOAL_EXT_LLM, &llm_blob, &llm_len);

    char flipped_path[4096];
    write_flipped_model(flipped_path, sizeof flipped_path);
    fixture g = {0};
    assert_int_equal(fixture_new(flipped_path, &g), SHOAL_OK);
    char want[17], have[17];
    model_hash16(f->rt, want);
    model_hash16(g.rt, have);
    assert_string_not_equal(want, have);

    shoal_instance_t *c = start(&g);
    assert_true(call0(c, "step_nn") > 0);
    void *nn_before = c->ext[SHOAL_EXT_NN], *llm_before = c->ext[SHOAL_EXT_LLM];
    const uint8_t *blobs[2] = {nn_blob, llm_blob};
    size_t lens[2] = {nn_len, llm_len};
    int slots[2] = {SHOAL_EXT_NN, SHOAL_EXT_LLM};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(c->ext_ops[slots[i]]->load(c, blobs[i], lens[i], NULL), SHOAL_E_FORMAT);
        const char *msg = shoal_last_error();
        assert_non_null(strstr(msg, "model \"default\""));
        assert_non_null(strstr(msg, want));
        assert_non_null(strstr(msg, have));
    }
    assert_ptr_equal(c->ext[SHOAL_EXT_NN], nn_before);
    assert_ptr_equal(c->ext[SHOAL_EXT_LLM], llm_before);
    assert_true(call0(c, "step_nn") > 0);

    shoal_instance_delete(c);
    shoal_module_delete(g.mod);
    shoal_runtime_delete(g.rt);
    unlink(flipped_path);
    free(nn_blob);
    free(llm_blob);
    shoal_instance_delete(a);
}

/* The llm section's KV record is a complete safetensors blob: 2 tensors per layer of
 * [n_past, kv_dim] F32, metadata naming the model's full SHA-256 and n_past. Sections of the
 * previous layout (version 1) are refused by version, not misread. */
static void test_kv_is_safetensors_and_versions(void **state)
{
    fixture *f = *state;
    shoal_instance_t *a = start(f);
    for (int i = 0; i < 2; i++) assert_true(call0(a, "step_llm") >= 0);
    uint8_t *blob, *nn_blob;
    size_t len, nn_len;
    save(a, SHOAL_EXT_LLM, &blob, &len);
    save(a, SHOAL_EXT_NN, &nn_blob, &nn_len);
    const shoal_nn_model_t *m = shoal_nn_model_find(f->rt, "default", 7);
    char hex[65];
    shoal_hex(m->sha256, 32, hex);

    /* magic, session count, handle, name, hash, n_ctx, flags (0: host-owned cache), then u64
     * length and the blob */
    uint8_t *at = memmem(blob, len, "default", 7);
    assert_non_null(at);
    assert_memory_equal(at + 7, m->sha256, 32);
    at += 7 + 32 + 4;
    uint32_t flags;
    memcpy(&flags, at, 4);
    assert_int_equal(flags, 0);
    at += 4;
    uint64_t n;
    memcpy(&n, at, 8);
    at += 8;
    assert_true(n > 0 && n < len - (size_t)(at - blob)); /* the sampler state follows */
    shoal_st_t *st = NULL;
    assert_int_equal(shoal_safetensors_parse(at, (size_t)n, &st), SHOAL_OK);
    assert_int_equal(shoal_safetensors_count(st), 2 * (size_t)m->llama->hp.n_layer);
    assert_string_equal(shoal_safetensors_meta(st, "model_sha256"), hex);
    assert_string_equal(shoal_safetensors_meta(st, "format"), "shoal.kv_cache");
    const char *np = shoal_safetensors_meta(st, "n_past");
    assert_non_null(np);
    assert_true(atoi(np) > 0);
    const shoal_st_tensor_t *k = NULL;
    uint64_t shape[2] = {(uint64_t)atoi(np), (uint64_t)m->llama->hp.kv_dim};
    assert_int_equal(shoal_safetensors_get(st, "layers.0.k", "F32", 2, shape, &k), SHOAL_OK);
    shoal_safetensors_free(st);

    shoal_instance_t *c = start(f);
    blob[3] = '1';
    assert_int_equal(c->ext_ops[SHOAL_EXT_LLM]->load(c, blob, len, NULL), SHOAL_E_FORMAT);
    assert_non_null(strstr(shoal_last_error(), "section version 1"));
    nn_blob[3] = '1';
    assert_int_equal(c->ext_ops[SHOAL_EXT_NN]->load(c, nn_blob, nn_len, NULL), SHOAL_E_FORMAT);
    assert_non_null(strstr(shoal_last_error(), "section version 1"));
    /* a corrupted KV byte is caught by the blob's CRC */
    blob[3] = '0' + NN_SNAP_VERSION;
    at[n - 5] ^= 0x40; /* inside the last tensor's rows */
    assert_int_equal(c->ext_ops[SHOAL_EXT_LLM]->load(c, blob, len, NULL), SHOAL_E_FORMAT);
    assert_non_null(strstr(shoal_last_error(), "checksum"));
    free(blob);
    free(nn_blob);
    shoal_instance_delete(a);
    shoal_instance_delete(c);
}

/* The llm section, damaged: every single-byte change in its headers and records (and a sample of
 * the rest) and every truncation near them either loads or is refused with a status — never a
 * crash, a hang or a read outside the blob or the guest's memory (this runs under ASan too). The
 * section holds a host-owned session and one whose cache lives in guest memory (llm_open_kv), so
 * the offset/length/n_past record is damaged as well; an offset moved past the memory must be
 * refused. */
static void test_llm_section_mutations(void **state)
{
    fixture *f = *state;
    shoal_instance_t *a = start(f);
    int32_t r = -1;
    assert_int_equal(shoal_instance_call_i32(a, "setup_kv", NULL, 0, &r, 1), SHOAL_OK);
    assert_int_equal(r, 0);
    uint8_t *blob;
    size_t len;
    save(a, SHOAL_EXT_LLM, &blob, &len);
    /* c grows its memory the same way (a real restore brings the memory first) */
    shoal_instance_t *c = start(f);
    assert_int_equal(shoal_instance_call_i32(c, "setup_kv", NULL, 0, &r, 1), SHOAL_OK);
    const shoal_ext_ops_t *ops = c->ext_ops[SHOAL_EXT_LLM];
    assert_non_null(ops);
    assert_int_equal(ops->load(c, blob, len, NULL), SHOAL_OK);
    uint8_t *m = malloc(len);
    int refused = 0, loaded = 0;
    for (size_t i = 0; i < len; i += (i < 512 || i + 512 >= len) ? 1 : 4099) {
        static const uint8_t flips[] = {0x01, 0x80, 0xFF};
        for (int k = 0; k < 3; k++) {
            memcpy(m, blob, len);
            m[i] ^= flips[k];
            if (ops->load(c, m, len, NULL) == SHOAL_OK) loaded++;
            else refused++;
        }
    }
    for (size_t n = 0; n < len; n += (n < 512 || n + 512 >= len) ? 1 : 4099) {
        if (ops->load(c, blob, n, NULL) == SHOAL_OK) fail_msg("a section truncated to %zu of %zu bytes was accepted", n, len);
        refused++;
    }
    print_message("llm section of %zu bytes: %d damaged copies refused, %d loaded (a changed value that is still "
                  "valid, e.g. a larger n_ctx), no crash\n", len, refused, loaded);
    /* the guest-memory session's record sits at the end, before the sampler blob: moving its
     * offset past the memory must be refused */
    size_t mem_size = 0;
    shoal_instance_memory(c, &mem_size);
    int moved = 0;
    for (size_t i = 0; i + 12 <= len; i++) {
        uint32_t off, kvl, np;
        memcpy(&off, blob + i, 4), memcpy(&kvl, blob + i + 4, 4), memcpy(&np, blob + i + 8, 4);
        if (kvl < 1000000 || kvl > 64u << 20 || np != 4 || off % 16 || off >= mem_size) continue;
        memcpy(m, blob, len);
        uint32_t bad = (uint32_t)mem_size - 16;
        memcpy(m + i, &bad, 4);
        assert_int_equal(ops->load(c, m, len, NULL), SHOAL_E_FORMAT);
        assert_non_null(strstr(shoal_last_error(), "does not fit"));
        moved++;
    }
    assert_int_equal(moved, 1);
    assert_int_equal(ops->load(c, blob, len, NULL), SHOAL_OK); /* and the good one still loads */
    free(m);
    free(blob);
    shoal_instance_delete(a);
    shoal_instance_delete(c);
}

/* A whole actor's snapshot file (linear memory, globals, the llm section with its KV rows)
 * restores and answers the next message exactly as the original does. The file's checksum is
 * verified after the layers restored (they note the CRCs of the KV rows as they write them), so
 * every flipped byte must still be refused as a checksum mismatch, whatever else it breaks. */
static void test_whole_file(void **state)
{
    fixture *f = *state;
    char guest[4200];
    snprintf(guest, sizeof guest, "%s/llm_chat_actor.wasm", getenv("SHOAL_GUESTS"));
    shoal_module_t *mod = NULL;
    assert_int_equal(shoal_module_load(f->rt, guest, &mod), SHOAL_OK);
    shoal_instance_config_t ic;
    shoal_instance_config_init(&ic);
    ic.inherit_stdio = false;
    shoal_instance_t *a = NULL, *b = NULL;
    assert_int_equal(shoal_actor_start(f->rt, mod, &ic, &a), SHOAL_OK);
    char *ra = NULL, *rb = NULL;
    size_t na = 0, nb = 0;
    assert_int_equal(shoal_actor_send(a, "Hi", 2, &ra, &na), SHOAL_OK);
    free(ra);
    const char *tmp = getenv("TMPDIR");
    char path[4200], bad[4200];
    snprintf(path, sizeof path, "%s/nnsnap-whole-%d.snap", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    snprintf(bad, sizeof bad, "%s/nnsnap-whole-%d.bad", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    if (shoal_instance_snapshot_save(a, mod, path) != SHOAL_OK) fail_msg("%s", shoal_last_error());
    assert_int_equal(shoal_actor_send(a, "Name a color.", 13, &ra, &na), SHOAL_OK);
    assert_int_equal(shoal_instance_snapshot_restore(f->rt, mod, &ic, path, &b), SHOAL_OK);
    assert_int_equal(shoal_actor_send(b, "Name a color.", 13, &rb, &nb), SHOAL_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(ra, rb, na);
    free(ra);
    free(rb);
    shoal_instance_delete(b);

    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    size_t n = (size_t)ftell(fp);
    rewind(fp);
    uint8_t *orig = malloc(n), *c = malloc(n);
    assert_int_equal(fread(orig, 1, n, fp), n);
    fclose(fp);
    assert_non_null(memmem(orig, n, "layers.0.k", 10)); /* the KV rows are in the file */
    int refused = 0;
    for (size_t off = 64; off < n; off += n / 37 + 1) {
        memcpy(c, orig, n);
        c[off] ^= 0x10;
        fp = fopen(bad, "wb");
        assert_non_null(fp);
        assert_int_equal(fwrite(c, 1, n, fp), n);
        fclose(fp);
        shoal_instance_t *x = NULL;
        assert_int_not_equal(shoal_instance_snapshot_restore(f->rt, mod, &ic, bad, &x), SHOAL_OK);
        assert_null(x);
        if (!strstr(shoal_last_error(), "checksum mismatch")) fail_msg("byte %zu of %zu: %s", off, n, shoal_last_error());
        refused++;
    }
    assert_true(refused >= 30);
    unlink(bad);
    unlink(path);
    free(orig);
    free(c);
    shoal_instance_delete(a);
    shoal_module_delete(mod);
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
        cmocka_unit_test(test_refuses_other_model_bytes),
        cmocka_unit_test(test_kv_is_safetensors_and_versions),
        cmocka_unit_test(test_llm_section_mutations),
        cmocka_unit_test(test_whole_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
