/* test_snapshot.c — snapshots of actors: SHA-256 and CRC-32C against known values; a save and
 * restore gives byte-identical memory and globals and identical replies from then on; forks
 * diverge; memory is stored sparsely; corrupt, truncated, other-module and other-version files
 * are refused with a message and the running actor is untouched; state that cannot be
 * captured (hidden globals, layers without snapshot support) makes save fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/sha256.h"
#include "runtime/runtime_impl.h"
#include "snapshot/format.h"
#include "snapshot/restore_src.h"
#include "snapshot/safetensors.h"
#include "snapshot/snapshot.h"

static char g_guest[1024], g_other_guest[1024], g_dir[1024];

/* ---- SHA-256 / CRC-32C ---- */

static void pattern(uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(i * 31 + 7);
}

/* Digests of the pattern above from Python's hashlib; lengths straddle the padding edges. */
static const struct {
    size_t n;
    const char *hex;
} k_sha_vectors[] = {
    {0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {1, "ca358758f6d27e6cf45272937977a748fd88391db679ceda7dc7bf1f005ee879"},
    {3, "647674a296197442f518bcca323ec605dd8d098b2d4f22ee1fdcdd2bb753a189"},
    {55, "8aa994584139d128848eeebc4e815639ba5ab6e6e39574195a63ac4f14f7c43b"},
    {56, "ad574708f75c044c9b85de64cb568ee7711ff4f36448c6242f053ba8f6cc2b63"},
    {57, "5b46e502092be01b1100193e089fdda95638c12e19a1d24f308eb2c3d3ae849d"},
    {63, "280ed3e8ff1df845b2e7dfe6ac6cee817bef20e783cc65abc41b818b4d2fe076"},
    {64, "c6ab9724ade5b6a7a1edfffb12f3aa9181351355af8fd08c919952ad211339dd"},
    {65, "788367c73c7ddf4c53f65e68cc0d943e6227ab55b0e78ba63ace822b1c6301c0"},
    {127, "192409cd280e14b743642ad1343fbd3e82d9305de72c078117745a679210cc3d"},
    {128, "cc548ca2dec1f6fe4f58b2e27aa9c7521607df1130d140b55a4dad0665302356"},
    {1000, "5097e7d587352f5097062ae679f37bda5802d9f875aba14c8cb4d1a188ada179"},
    {100000, "731620161155f68e1209f22bc34a726bf5a583f40acf23ae55684b674fdbebf2"},
};

/* Number of vectors that do not match, one-shot and fed in uneven pieces. */
static int sha_mismatches(void)
{
    uint8_t *buf = malloc(100000), d[32];
    char hex[65];
    int bad = 0;
    pattern(buf, 100000);
    for (size_t i = 0; i < sizeof k_sha_vectors / sizeof k_sha_vectors[0]; i++) {
        shoal_sha256(buf, k_sha_vectors[i].n, d);
        shoal_hex(d, 32, hex);
        bad += strcmp(hex, k_sha_vectors[i].hex) != 0;
        shoal_sha256_t s;
        shoal_sha256_init(&s);
        for (size_t at = 0, step = 1; at < k_sha_vectors[i].n; at += step, step = step * 3 % 71 + 1)
            shoal_sha256_update(&s, buf + at, at + step > k_sha_vectors[i].n ? k_sha_vectors[i].n - at : step);
        shoal_sha256_final(&s, d);
        shoal_hex(d, 32, hex);
        bad += strcmp(hex, k_sha_vectors[i].hex) != 0;
    }
    shoal_sha256("abc", 3, d); /* FIPS 180-4 example */
    shoal_hex(d, 32, hex);
    bad += strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") != 0;
    free(buf);
    return bad;
}

static void test_sha256_vectors(void **state)
{
    (void)state;
    /* The portable code in a child (the SHA-extension choice is made once per process), then
     * whatever this CPU uses here. */
    pid_t pid = fork();
    if (pid == 0) {
        setenv("SHOAL_SHA256_PORTABLE", "1", 1);
        _exit(sha_mismatches() ? 1 : 0);
    }
    int status = -1;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(sha_mismatches(), 0);
}

/* Bit-at-a-time CRC-32C: the definition, independent of the table and SSE4.2 paths. */
static uint32_t crc_ref(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(shoal_crc32c(0, "123456789", 9), 0xE3069283u); /* the standard check value */
    /* Long inputs take the three-stream path: lengths around its 24 KiB rounds, odd offsets. */
    size_t big = 200000;
    uint8_t *lg = malloc(big + 16);
    for (size_t i = 0; i < big + 16; i++) lg[i] = (uint8_t)(i * 2654435761u >> 13);
    const size_t lens[] = {24575, 24576, 24577, 49152 + 9, 100000, big};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++)
        for (size_t off = 0; off < 16; off += 5) {
            assert_int_equal(shoal_crc32c(0, lg + off, lens[k]), crc_ref(lg + off, lens[k]));
            size_t h = lens[k] / 3 + 1;
            assert_int_equal(shoal_crc32c(shoal_crc32c(0, lg + off, h), lg + off + h, lens[k] - h),
                             crc_ref(lg + off, lens[k]));
        }
    free(lg);
    uint8_t buf[3000];
    pattern(buf, sizeof buf);
    for (size_t off = 0; off < 9; off++)
        for (size_t n = 0; n + off <= sizeof buf; n += n < 40 ? 1 : 97) {
            assert_int_equal(shoal_crc32c(0, buf + off, n), crc_ref(buf + off, n));
            size_t h = n / 3; /* continuing a running CRC */
            assert_int_equal(shoal_crc32c(shoal_crc32c(0, buf + off, h), buf + off + h, n - h), crc_ref(buf + off, n));
        }
}

/* Joined CRCs and the threaded CRC over scattered spans equal the sequential CRC: 40 MB cut into
 * spans of uneven sizes (empty ones too), so thread boundaries fall inside and between spans. */
static void test_crc32c_spans(void **state)
{
    (void)state;
    const size_t total = 40u << 20;
    uint8_t *b = malloc(total);
    assert_non_null(b);
    for (size_t i = 0; i < total; i++) b[i] = (uint8_t)((i * 2654435761u) >> 11);
    const uint32_t whole = shoal_crc32c(0, b, total);
    const size_t cuts[] = {0, 1, 7, 3u << 20, 5000001, 8u << 20, 12345};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++)
        assert_int_equal(shoal_crc32c_combine(shoal_crc32c(0, b, cuts[k]), shoal_crc32c(0, b + cuts[k], total - cuts[k]),
                                              total - cuts[k]),
                         whole);
    shoal_span_t sp[9];
    size_t at = 0, n = 0;
    const size_t lens[] = {3, 0, (9u << 20) + 5, 1u << 20, 0, 777, (13u << 20) + 1};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        sp[n++] = (shoal_span_t){b + at, lens[k]};
        at += lens[k];
    }
    sp[n++] = (shoal_span_t){b + at, total - at};
    assert_int_equal(shoal_crc32c_spans(0, sp, n), whole);
    /* continuing a running CRC, and a single span */
    const uint32_t head = shoal_crc32c(0, "prefix", 6);
    assert_int_equal(shoal_crc32c_spans(head, &(shoal_span_t){b, total}, 1), shoal_crc32c(head, b, total));
    assert_int_equal(shoal_crc32c_spans(0, NULL, 0), 0);
    free(b);
}

/* ---- actors ---- */

typedef struct fx {
    shoal_runtime_t *rt;
    shoal_module_t *mod;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    shoal_runtime_config_t rc;
    shoal_runtime_config_init(&rc);
    rc.threads = 1;
    if (shoal_runtime_new(&rc, &f->rt) != SHOAL_OK) fail_msg("runtime: %s", shoal_last_error());
    if (shoal_module_load(f->rt, g_guest, &f->mod) != SHOAL_OK) fail_msg("module: %s", shoal_last_error());
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    shoal_module_delete(f->mod);
    shoal_runtime_delete(f->rt);
    free(f);
    return 0;
}

static shoal_instance_config_t quiet_cfg(void)
{
    shoal_instance_config_t c;
    shoal_instance_config_init(&c);
    c.inherit_stdio = false;
    return c;
}

static char *send(shoal_instance_t *a, const char *msg)
{
    char *r = NULL;
    size_t n = 0;
    if (shoal_actor_send(a, msg, strlen(msg), &r, &n) != SHOAL_OK) fail_msg("send %s: %s", msg, shoal_last_error());
    assert_int_equal(strlen(r), n);
    return r;
}

static void path_of(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", g_dir, name); }

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n + 1);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void write_file(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* Every exported mutable global's value, in export order, as bytes. */
static size_t globals_bytes(shoal_instance_t *inst, uint8_t *out, size_t cap)
{
    size_t n = 0;
    char *name;
    size_t nl;
    wasmtime_extern_t e;
    for (size_t i = 0; wasmtime_instance_export_nth(inst->ctx, &inst->instance, i, &name, &nl, &e); i++) {
        if (e.kind != WASMTIME_EXTERN_GLOBAL) continue;
        wasmtime_val_t v;
        wasmtime_global_get(inst->ctx, &e.of.global, &v);
        assert_true(n + 17 <= cap);
        out[n++] = v.kind;
        memcpy(out + n, &v.of, 16);
        n += 16;
    }
    int32_t sp = 0;
    assert_int_equal(shoal_instance_call_i32(inst, "shoal_stack_pointer_get", NULL, 0, &sp, 1), SHOAL_OK);
    memcpy(out + n, &sp, 4);
    return n + 4;
}

static void assert_same_state(shoal_instance_t *a, shoal_instance_t *b)
{
    size_t na, nb;
    uint8_t *ma = shoal_instance_memory(a, &na), *mb = shoal_instance_memory(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(ma, mb, na);
    uint8_t ga[512], gb[512];
    size_t la = globals_bytes(a, ga, sizeof ga), lb = globals_bytes(b, gb, sizeof gb);
    assert_int_equal(la, lb);
    assert_true(la > 20); /* actor_generation + __stack_pointer at least */
    assert_memory_equal(ga, gb, la);
}

static void test_round_trip(void **state)
{
    fx_t *f = *state;
    shoal_instance_config_t cfg = quiet_cfg();
    shoal_instance_t *a = NULL, *b = NULL;
    assert_int_equal(shoal_actor_start(f->rt, f->mod, &cfg, &a), SHOAL_OK);
    free(send(a, "hello"));
    free(send(a, "big 1000000"));
    free(send(a, "world"));
    char path[1200];
    path_of(path, sizeof path, "rt.snap");
    assert_int_equal(shoal_instance_snapshot_save(a, f->mod, path), SHOAL_OK);
    assert_int_equal(shoal_instance_snapshot_restore(f->rt, f->mod, &cfg, path, &b), SHOAL_OK);
    assert_same_state(a, b);
    /* Both continue identically, and stay identical. */
    const char *msgs[] = {"one", "two", "big 70000", "three"};
    for (size_t i = 0; i < 4; i++) {
        char *ra = send(a, msgs[i]), *rb = send(b, msgs[i]);
        assert_string_equal(ra, rb);
        free(ra), free(rb);
    }
    assert_same_state(a, b);
    /* A restore of the same file in the same process again: restores never share state. */
    shoal_instance_t *c = NULL;
    assert_int_equal(shoal_instance_snapshot_restore(f->rt, f->mod, &cfg, path, &c), SHOAL_OK);
    char *rc = send(c, "one");
    assert_non_null(strstr(rc, "#4 "));
    free(rc);
    shoal_instance_delete(c);
    shoal_instance_delete(b);
    shoal_instance_delete(a);
}

static void test_fork_diverges(void **state)
{
    fx_t *f = *state;
    shoal_instance_config_t cfg = quiet_cfg();
    shoal_instance_t *a = NULL, *k[3];
    assert_int_equal(shoal_actor_start(f->rt, f->mod, &cfg, &a), SHOAL_OK);
    free(send(a, "root"));
    char path[1200];
    path_of(path, sizeof path, "fork.snap");
    assert_int_equal(shoal_instance_snapshot_save(a, f->mod, path), SHOAL_OK);
    for (int i = 0; i < 3; i++) assert_int_equal(shoal_instance_snapshot_restore(f->rt, f->mod, &cfg, path, &k[i]), SHOAL_OK);
    char *same[3], *diff[3];
    for (int i = 0; i < 3; i++) same[i] = send(k[i], "common");
    assert_string_equal(same[0], same[1]);
    assert_string_equal(same[1], same[2]);
    char msg[32];
    for (int i = 0; i < 3; i++) {
        snprintf(msg, sizeof msg, "branch %d", i);
        diff[i] = send(k[i], msg);
    }
    assert_string_not_equal(diff[0], diff[1]);
    assert_string_not_equal(diff[1], diff[2]);
    /* Diverged: the same next message now gets different answers (the hash carries history). */
    char *n0 = send(k[0], "next"), *n1 = send(k[1], "next");
    assert_string_not_equal(n0, n1);
    size_t s0, s1;
    uint8_t *m0 = shoal_instance_memory(k[0], &s0), *m1 = shoal_instance_memory(k[1], &s1);
    assert_true(s0 != s1 || memcmp(m0, m1, s0) != 0);
    free(n0), free(n1);
    for (int i = 0; i < 3; i++) free(same[i]), free(diff[i]), shoal_instance_delete(k[i]);
    shoal_instance_delete(a);
}

static void test_sparse(void **state)
{
    fx_t *f = *state;
    shoal_instance_config_t cfg = quiet_cfg();
    shoal_instance_t *a = NULL;
    assert_int_equal(shoal_actor_start(f->rt, f->mod, &cfg, &a), SHOAL_OK);
    free(send(a, "big 8000000")); /* 8 MB, one non-zero byte per 64 KiB */
    size_t size;
    uint8_t *m = shoal_instance_memory(a, &size);
    size_t nz = 0;
    for (size_t off = 0; off < size; off += SNAP_PAGE) {
        bool any = false;
        for (size_t i = 0; i < SNAP_PAGE && !any; i++) any = m[off + i] != 0;
        nz += any;
    }
    char path[1200];
    path_of(path, sizeof path, "sparse.snap");
    assert_int_equal(shoal_instance_snapshot_save(a, f->mod, path), SHOAL_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    /* Stored = the non-zero pages plus a small overhead (header, info, run table, globals). */
    assert_true(size > 8000000);
    assert_true((size_t)sb.st_size >= nz * SNAP_PAGE);
    assert_true((size_t)sb.st_size < nz * SNAP_PAGE + 16 * nz + 1024);
    assert_true((size_t)sb.st_size < size / 8);
    shoal_instance_delete(a);
}

/* A restore that must fail: the status, a message naming the fault, and no instance. */
static void expect_refused(fx_t *f, shoal_module_t *m, const char *path, const char *needle)
{
    shoal_instance_config_t cfg = quiet_cfg();
    shoal_instance_t *out = (shoal_instance_t *)(uintptr_t)0x1;
    shoal_status_t s = shoal_instance_snapshot_restore(f->rt, m, &cfg, path, &out);
    if (s == SHOAL_OK) fail_msg("%s was accepted", path);
    assert_true(out == (shoal_instance_t *)(uintptr_t)0x1); /* not written on failure */
    assert_true(strlen(shoal_last_error()) > 10);
    if (needle && !strstr(shoal_last_error(), needle)) fail_msg("message \"%s\" lacks \"%s\"", shoal_last_error(), needle);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void test_refusals(void **state)
{
    fx_t *f = *state;
    shoal_instance_config_t cfg = quiet_cfg();
    shoal_instance_t *a = NULL, *ref = NULL;
    assert_int_equal(shoal_actor_start(f->rt, f->mod, &cfg, &a), SHOAL_OK);
    free(send(a, "alpha"));
    free(send(a, "big 200000"));
    char good[1200], bad[1200];
    path_of(good, sizeof good, "good.snap");
    path_of(bad, sizeof bad, "bad.snap");
    assert_int_equal(shoal_instance_snapshot_save(a, f->mod, good), SHOAL_OK);
    assert_int_equal(shoal_instance_snapshot_restore(f->rt, f->mod, &cfg, good, &ref), SHOAL_OK);
    size_t n;
    uint8_t *orig = read_file(good, &n);
    size_t msize;
    uint8_t *mem = shoal_instance_memory(a, &msize), *before = malloc(msize);
    memcpy(before, mem, msize);

    /* One flipped byte anywhere: every header byte, then a stride through the body, the trailer. */
    int tried = 0;
    for (size_t off = 0; off < n; off += off < 80 ? 1 : (off > n - 8 ? 1 : 97)) {
        uint8_t *c = malloc(n);
        memcpy(c, orig, n);
        c[off] ^= (uint8_t)(0x5a | (off & 1));
        write_file(bad, c, n);
        expect_refused(f, f->mod, bad, NULL);
        free(c);
        tried++;
    }
    assert_true(tried > 100);
    /* The message says what is wrong. */
    uint8_t *c = malloc(n + 16);
    memcpy(c, orig, n);
    c[n / 2] ^= 1;
    write_file(bad, c, n);
    expect_refused(f, f->mod, bad, "checksum");
    memcpy(c, orig, n);
    c[0] = 'X';
    write_file(bad, c, n);
    expect_refused(f, f->mod, bad, "magic");

    /* Damage that keeps the checksum valid (a crafted file): every byte outside the memory
     * pages, flipped and re-checksummed, must be refused or restore cleanly, never crash. */
    int accepted = 0, refused = 0;
    FILE *devnull = fopen("/dev/null", "w");
    for (size_t off = 0; off < n - 4; off++) {
        bool meta = off < 400 || off >= n - 300;
        if (!meta) continue;
        memcpy(c, orig, n);
        c[off] ^= (uint8_t)(1u << (off % 8));
        put32(c + n - 4, shoal_crc32c(0, c, n - 4));
        write_file(bad, c, n);
        shoal_instance_t *x = NULL;
        if (shoal_instance_snapshot_restore(f->rt, f->mod, &cfg, bad, &x) == SHOAL_OK) {
            accepted++;
            shoal_instance_delete(x);
        } else {
            assert_true(strlen(shoal_last_error()) > 10);
            refused++;
        }
        shoal_snapshot_inspect(bad, devnull); /* reads the same structures: must not crash either */
    }
    assert_true(refused > 100);
    fclose(devnull);

    /* Truncated at many lengths, and extended. */
    for (size_t len = 0; len < n; len += len < 80 ? 1 : 211) {
        write_file(bad, orig, len);
        expect_refused(f, f->mod, bad, len >= SNAP_HEADER_SIZE + SNAP_TRAILER_SIZE ? "truncated" : NULL);
    }
    write_file(bad, orig, n - 1);
    expect_refused(f, f->mod, bad, "truncated");
    memcpy(c, orig, n);
    memset(c + n, 0, 16);
    write_file(bad, c, n + 16);
    expect_refused(f, f->mod, bad, "wrong length");

    /* Another format version, with a valid checksum so only the version differs. */
    memcpy(c, orig, n);
    put32(c + SNAP_OFF_VERSION, SNAP_VERSION + 1);
    put32(c + n - 4, shoal_crc32c(0, c, n - 4));
    write_file(bad, c, n);
    expect_refused(f, f->mod, bad, "format version 2");

    /* Another module: the same code plus a custom section is a different module. */
    size_t wn;
    uint8_t *w = read_file(g_guest, &wn);
    uint8_t *w2 = malloc(wn + 8);
    memcpy(w2, w, wn);
    const uint8_t custom[] = {0, 6, 5, 'o', 't', 'h', 'e', 'r'};
    memcpy(w2 + wn, custom, sizeof custom);
    shoal_module_t *other = NULL;
    assert_int_equal(shoal_module_new(f->rt, w2, wn + sizeof custom, &other), SHOAL_OK);
    expect_refused(f, other, good, "another module");
    shoal_module_delete(other);
    free(w), free(w2);

    /* Missing file. */
    path_of(bad, sizeof bad, "does-not-exist.snap");
    expect_refused(f, f->mod, bad, "No such file");

    /* The running actor saw none of it. */
    mem = shoal_instance_memory(a, &msize);
    assert_memory_equal(mem, before, msize);
    char *ra = send(a, "after"), *rr = send(ref, "after");
    assert_string_equal(ra, rr);
    free(ra), free(rr);
    free(c), free(orig), free(before);
    shoal_instance_delete(ref);
    shoal_instance_delete(a);
}

/* A module keeping __stack_pointer hidden and without the accessors cannot be captured. */
static void test_hidden_global_refused(void **state)
{
    fx_t *f = *state;
    shoal_module_t *m = NULL;
    assert_int_equal(shoal_module_load(f->rt, g_other_guest, &m), SHOAL_OK);
    assert_true(m->info.scanned);
    assert_true(m->info.hidden_stack_pointer);
    shoal_instance_config_t cfg = quiet_cfg();
    shoal_instance_t *inst = NULL;
    assert_int_equal(shoal_instance_new(f->rt, m, &cfg, &inst), SHOAL_OK);
    char path[1200];
    path_of(path, sizeof path, "hidden.snap");
    unlink(path);
    assert_int_equal(shoal_instance_snapshot_save(inst, m, path), SHOAL_E_UNSUPPORTED);
    assert_non_null(strstr(shoal_last_error(), "__stack_pointer"));
    assert_int_equal(access(path, F_OK), -1); /* nothing written */
    shoal_instance_delete(inst);
    shoal_module_delete(m);
}

/* ---- layer (ext) sections ---- */

static int g_dummy_loads;
static uint8_t g_dummy_seen[64];
static size_t g_dummy_seen_len;

static void dummy_free(void *p) { free(p); }
static shoal_status_t dummy_save(void *p, uint8_t **buf, size_t *len)
{
    const char *s = p;
    uint8_t *nb = realloc(*buf, *len + strlen(s));
    if (!nb) return SHOAL_E_NOMEM;
    memcpy(nb + *len, s, strlen(s));
    *buf = nb;
    *len += strlen(s);
    return SHOAL_OK;
}
/* 1: the layer notes the true CRC of its blob in the restore source, 2: a wrong one */
static int g_dummy_note;
static shoal_status_t dummy_load(shoal_instance_t *inst, const uint8_t *buf, size_t len, shoal_restore_src_t *src)
{
    if (g_dummy_note) {
        assert_non_null(src);
        assert_true(buf >= src->base && buf + len <= src->base + src->size);
        shoal_restore_src_note(src, buf, len, shoal_crc32c(0, buf, len) ^ (g_dummy_note == 2));
    }
    g_dummy_loads++;
    memcpy(g_dummy_seen, buf, len < 64 ? len : 64);
    g_dummy_seen_len = len;
    inst->ext[3] = strndup((const char *)buf, len);
    return SHOAL_OK;
}
static const shoal_ext_ops_t k_dummy = {"dummy", dummy_free, dummy_save, dummy_load};
static const shoal_ext_ops_t k_other = {"other", dummy_free, dummy_save, dummy_load};
static const shoal_ext_ops_t k_nosave = {"nosave", dummy_free, NULL, NULL};

static void test_ext_sections(void **state)
{
    fx_t *f = *state;
    shoal_instance_config_t cfg = quiet_cfg();
    shoal_instance_t *a = NULL, *b = NULL;
    assert_int_equal(shoal_actor_start(f->rt, f->mod, &cfg, &a), SHOAL_OK);
    char path[1200];
    path_of(path, sizeof path, "ext.snap");
    /* A layer without snapshot support: save refuses, naming it. */
    a->ext[3] = strdup("x");
    a->ext_ops[3] = &k_nosave;
    assert_int_equal(shoal_instance_snapshot_save(a, f->mod, path), SHOAL_E_UNSUPPORTED);
    assert_non_null(strstr(shoal_last_error(), "nosave"));
    /* With save/load: the blob travels and load receives it byte for byte. */
    free(a->ext[3]);
    a->ext[3] = strdup("layer state 42");
    a->ext_ops[3] = &k_dummy;
    /* Not registered explicitly: saving registers the slot's ops for this process. */
    assert_int_equal(shoal_instance_snapshot_save(a, f->mod, path), SHOAL_OK);
    g_dummy_loads = 0;
    assert_int_equal(shoal_instance_snapshot_restore(f->rt, f->mod, &cfg, path, &b), SHOAL_OK);
    assert_int_equal(g_dummy_loads, 1);
    assert_int_equal(g_dummy_seen_len, 14);
    assert_memory_equal(g_dummy_seen, "layer state 42", 14);
    assert_string_equal(b->ext[3], "layer state 42");
    assert_ptr_equal(b->ext_ops[3], &k_dummy);
    shoal_instance_delete(b);
    /* The file's checksum is checked last, taking the CRC a layer noted for its bytes instead of
     * reading them again: the true one restores; a false one is a mismatch, although the file is
     * intact, which shows the noted value was the one used. */
    g_dummy_note = 1;
    assert_int_equal(shoal_instance_snapshot_restore(f->rt, f->mod, &cfg, path, &b), SHOAL_OK);
    assert_string_equal(b->ext[3], "layer state 42");
    shoal_instance_delete(b);
    g_dummy_note = 2;
    expect_refused(f, f->mod, path, "checksum mismatch");
    g_dummy_note = 0;
    /* A process that does not know the layer refuses, by name, before building anything. */
    assert_int_equal(shoal_snapshot_register_ext(3, &k_other), SHOAL_OK);
    g_dummy_loads = 0;
    expect_refused(f, f->mod, path, "\"dummy\"");
    assert_int_equal(g_dummy_loads, 0);
    shoal_instance_delete(a);
}

/* A call cut off midway (here by a timeout) leaves the actor mid-message: no more messages,
 * no snapshot; a snapshot from before still restores. */
static void test_interrupted_actor(void **state)
{
    fx_t *f = *state;
    shoal_instance_config_t cfg = quiet_cfg();
    cfg.timeout_ms = 100;
    shoal_instance_t *a = NULL, *b = NULL;
    assert_int_equal(shoal_actor_start(f->rt, f->mod, &cfg, &a), SHOAL_OK);
    free(send(a, "one"));
    char path[1200], path2[1200];
    path_of(path, sizeof path, "before.snap");
    path_of(path2, sizeof path2, "after.snap");
    assert_int_equal(shoal_instance_snapshot_save(a, f->mod, path), SHOAL_OK);
    int32_t sp_before = 0, sp_after = 0;
    assert_int_equal(shoal_instance_call_i32(a, "shoal_stack_pointer_get", NULL, 0, &sp_before, 1), SHOAL_OK);
    char *r = NULL;
    size_t n = 0;
    assert_int_equal(shoal_actor_send(a, "spin", 4, &r, &n), SHOAL_E_TIMEOUT);
    assert_int_equal(shoal_instance_call_i32(a, "shoal_stack_pointer_get", NULL, 0, &sp_after, 1), SHOAL_OK);
    assert_true(sp_after < sp_before); /* the unwound call never gave its stack frame back */
    assert_int_equal(shoal_actor_send(a, "two", 3, &r, &n), SHOAL_E_INVALID);
    assert_non_null(strstr(shoal_last_error(), "interrupted"));
    unlink(path2);
    assert_int_not_equal(shoal_instance_snapshot_save(a, f->mod, path2), SHOAL_OK);
    assert_non_null(strstr(shoal_last_error(), "interrupted"));
    assert_int_equal(access(path2, F_OK), -1);
    assert_int_equal(shoal_instance_snapshot_restore(f->rt, f->mod, &cfg, path, &b), SHOAL_OK);
    assert_int_equal(shoal_actor_messages(b), 1);
    char *rb = send(b, "two");
    assert_non_null(strstr(rb, "#2 "));
    assert_int_equal(shoal_actor_messages(b), 2);
    free(rb);
    shoal_instance_delete(b);
    shoal_instance_delete(a);
}

int main(void)
{
    const char *guests = getenv("SHOAL_GUESTS");
    if (!guests) guests = "build/guests";
    snprintf(g_guest, sizeof g_guest, "%s/counter_actor.wasm", guests);
    snprintf(g_other_guest, sizeof g_other_guest, "%s/bench_zerocopy.wasm", guests);
    snprintf(g_dir, sizeof g_dir, "/tmp/shoal-test-snapshot-XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_crc32c_spans),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_diverges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sparse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hidden_global_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ext_sections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupted_actor, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) rc = rc ? rc : 1;
    return rc;
}
