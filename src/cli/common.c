/* common.c — options shared by the subcommands that run guests, and error reporting. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

const char *const cli_common_help =
    "  --device cpu|cuda|auto  compute device (default cpu; auto picks a usable GPU and says which)\n"
    "  --threads N             CPU threads (default: one per core)\n"
    "  --env KEY=VALUE         set a WASI environment variable (repeatable)\n"
    "  --dir HOST[::GUEST]     preopen a host directory, optionally under another guest path (repeatable)\n"
    "  --max-memory SIZE       cap the guest's linear memory (e.g. 64M, 1G)\n"
    "  --timeout TIME          stop the guest after TIME (e.g. 500ms, 10s; bare numbers are ms)\n"
    "  --fuel N                stop the guest after N units of fuel (about one per instruction)\n"
    "  --nn-preload NAME:GGML:TARGET:FILE.gguf\n"
    "                          load a model once and name it for wasi-nn (load_by_name) and the\n"
    "                          shoal token API (llm_open); TARGET AUTO follows --device, CPU or GPU\n"
    "                          pins the model's contexts there; repeatable\n";

void cli_common_init(cli_common *c)
{
    memset(c, 0, sizeof *c);
    shoal_runtime_config_init(&c->rt);
    shoal_instance_config_init(&c->inst);
}

void cli_common_free(cli_common *c)
{
    for (int i = 0; i < c->nowned; i++) free(c->owned[i]);
}

static int parse_u64(const char *s, uint64_t *out, char **end)
{
    if (!s || !*s || *s == '-') return -1;
    errno = 0;
    unsigned long long v = strtoull(s, end, 10);
    if (errno || *end == s) return -1;
    *out = v;
    return 0;
}

int cli_parse_size(const char *s, uint64_t *out)
{
    char *end;
    uint64_t v;
    if (parse_u64(s, &v, &end)) return -1;
    uint64_t mul = 1;
    if (!strcasecmp(end, "") || !strcasecmp(end, "b")) mul = 1;
    else if (!strcasecmp(end, "k") || !strcasecmp(end, "kb") || !strcasecmp(end, "kib")) mul = 1ull << 10;
    else if (!strcasecmp(end, "m") || !strcasecmp(end, "mb") || !strcasecmp(end, "mib")) mul = 1ull << 20;
    else if (!strcasecmp(end, "g") || !strcasecmp(end, "gb") || !strcasecmp(end, "gib")) mul = 1ull << 30;
    else return -1;
    if (v > UINT64_MAX / mul) return -1;
    *out = v * mul;
    return 0;
}

int cli_parse_duration_ms(const char *s, uint64_t *out)
{
    char *end;
    uint64_t v;
    if (parse_u64(s, &v, &end)) return -1;
    uint64_t mul;
    if (!strcmp(end, "") || !strcmp(end, "ms")) mul = 1;
    else if (!strcmp(end, "s")) mul = 1000;
    else if (!strcmp(end, "m") || !strcmp(end, "min")) mul = 60000;
    else return -1;
    if (v > UINT64_MAX / mul) return -1;
    *out = v * mul;
    return 0;
}

static const char *value_of(int argc, char **argv, int *i, const char *opt)
{
    const char *a = argv[*i];
    size_t n = strlen(opt);
    if (a[n] == '=') return a + n + 1;
    if (*i + 1 >= argc) {
        fprintf(stderr, "shoal: %s needs a value\n", opt);
        return NULL;
    }
    return argv[++*i];
}

static int is_opt(const char *a, const char *opt)
{
    size_t n = strlen(opt);
    return !strncmp(a, opt, n) && (a[n] == '\0' || a[n] == '=');
}

/* NAME:ENCODING:TARGET:PATH as WasmEdge spells it. The encoding must be GGML (or AUTO). TARGET
 * CPU or GPU pins the model's contexts to that device; AUTO follows --device; TPU is refused. */
static int parse_preload(cli_common *c, const char *v)
{
    const char *f[4];
    size_t len[3];
    const char *p = v;
    for (int k = 0; k < 3; k++) {
        const char *colon = strchr(p, ':');
        if (!colon) {
            fprintf(stderr, "shoal: --nn-preload takes NAME:GGML:AUTO:FILE.gguf (got \"%s\")\n", v);
            return -1;
        }
        f[k] = p;
        len[k] = (size_t)(colon - p);
        p = colon + 1;
    }
    f[3] = p;
    if (!(len[1] == 4 && !strncasecmp(f[1], "GGML", 4)) && !(len[1] == 4 && !strncasecmp(f[1], "AUTO", 4))) {
        fprintf(stderr, "shoal: --nn-preload %s: encoding \"%.*s\" is not supported (GGML)\n", v, (int)len[1], f[1]);
        return -1;
    }
    static const char *const targets[] = {"AUTO", "CPU", "GPU", "TPU"};
    int target = -1;
    for (int k = 0; k < 4; k++)
        if (len[2] == strlen(targets[k]) && !strncasecmp(f[2], targets[k], len[2])) target = k;
    if (target == 3) {
        fprintf(stderr, "shoal: --nn-preload %s: target TPU is not served here (AUTO, CPU or GPU)\n", v);
        return -1;
    }
    if (target < 0) {
        fprintf(stderr, "shoal: --nn-preload %s: target \"%.*s\" is not one of AUTO, CPU, GPU, TPU\n", v, (int)len[2],
                f[2]);
        return -1;
    }
    if (len[0] == 0 || !*f[3]) {
        fprintf(stderr, "shoal: --nn-preload %s: empty model name or path\n", v);
        return -1;
    }
    if (c->npreload == 16 || c->nowned == 64) {
        fprintf(stderr, "shoal: too many --nn-preload options\n");
        return -1;
    }
    char *name = strndup(f[0], len[0]);
    if (!name) return -1;
    c->owned[c->nowned++] = name;
    c->preload_name[c->npreload] = name;
    c->preload_path[c->npreload] = f[3];
    c->preload_device[c->npreload] = target == 1 ? SHOAL_DEVICE_CPU : target == 2 ? SHOAL_DEVICE_CUDA : SHOAL_DEVICE_AUTO;
    c->npreload++;
    return 1;
}

int cli_common_parse(cli_common *c, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v;
    if (is_opt(a, "--device")) {
        if (!(v = value_of(argc, argv, i, "--device"))) return -1;
        if (!strcmp(v, "cpu")) c->rt.device = SHOAL_DEVICE_CPU;
        else if (!strcmp(v, "cuda") || !strcmp(v, "gpu")) c->rt.device = SHOAL_DEVICE_CUDA;
        else if (!strcmp(v, "auto")) c->rt.device = SHOAL_DEVICE_AUTO;
        else {
            fprintf(stderr, "shoal: --device must be cpu, cuda or auto (got \"%s\")\n", v);
            return -1;
        }
        return 1;
    }
    if (is_opt(a, "--threads")) {
        if (!(v = value_of(argc, argv, i, "--threads"))) return -1;
        char *end;
        long t = strtol(v, &end, 10);
        if (*end || t < 1 || t > 1024) {
            fprintf(stderr, "shoal: --threads must be 1..1024 (got \"%s\")\n", v);
            return -1;
        }
        c->rt.threads = (int)t;
        return 1;
    }
    if (is_opt(a, "--env")) {
        if (!(v = value_of(argc, argv, i, "--env"))) return -1;
        if (!strchr(v, '=') || v[0] == '=') {
            fprintf(stderr, "shoal: --env takes KEY=VALUE (got \"%s\")\n", v);
            return -1;
        }
        if (c->nenv == 256) {
            fprintf(stderr, "shoal: too many --env options\n");
            return -1;
        }
        c->env[c->nenv++] = v;
        return 1;
    }
    if (is_opt(a, "--dir")) {
        if (!(v = value_of(argc, argv, i, "--dir"))) return -1;
        if (c->ndirs == 64) {
            fprintf(stderr, "shoal: too many --dir options\n");
            return -1;
        }
        const char *sep = strstr(v, "::");
        if (sep) {
            char *host = strndup(v, (size_t)(sep - v));
            if (!host) return -1;
            c->owned[c->nowned++] = host;
            c->dir_host[c->ndirs] = host;
            c->dir_guest[c->ndirs] = sep + 2;
        } else {
            c->dir_host[c->ndirs] = v;
            c->dir_guest[c->ndirs] = v;
        }
        if (access(c->dir_host[c->ndirs], R_OK) != 0) {
            fprintf(stderr, "shoal: --dir %s: %s\n", c->dir_host[c->ndirs], strerror(errno));
            return -1;
        }
        c->ndirs++;
        return 1;
    }
    if (is_opt(a, "--max-memory")) {
        if (!(v = value_of(argc, argv, i, "--max-memory"))) return -1;
        if (cli_parse_size(v, &c->inst.max_memory) || c->inst.max_memory == 0) {
            fprintf(stderr, "shoal: --max-memory takes a size such as 64M or 1G (got \"%s\")\n", v);
            return -1;
        }
        return 1;
    }
    if (is_opt(a, "--timeout")) {
        if (!(v = value_of(argc, argv, i, "--timeout"))) return -1;
        if (cli_parse_duration_ms(v, &c->inst.timeout_ms) || c->inst.timeout_ms == 0) {
            fprintf(stderr, "shoal: --timeout takes a duration such as 500ms or 10s (got \"%s\")\n", v);
            return -1;
        }
        return 1;
    }
    if (is_opt(a, "--fuel")) {
        if (!(v = value_of(argc, argv, i, "--fuel"))) return -1;
        char *end;
        if (parse_u64(v, &c->inst.fuel, &end) || *end || c->inst.fuel == 0) {
            fprintf(stderr, "shoal: --fuel takes a positive integer (got \"%s\")\n", v);
            return -1;
        }
        c->rt.enable_fuel = true;
        return 1;
    }
    if (is_opt(a, "--nn-preload")) {
        if (!(v = value_of(argc, argv, i, "--nn-preload"))) return -1;
        return parse_preload(c, v);
    }
    return 0;
}

int cli_preload_models(const cli_common *c, shoal_runtime_t *rt)
{
    for (int i = 0; i < c->npreload; i++) {
        shoal_status_t s = shoal_runtime_preload_model_on(rt, c->preload_name[i], c->preload_path[i],
                                                          c->preload_device[i]);
        if (s != SHOAL_OK) {
            fprintf(stderr, "shoal: --nn-preload %s: %s\n", c->preload_name[i], shoal_last_error());
            return -1;
        }
    }
    return 0;
}

int cli_report(shoal_status_t s, const char *what)
{
    fprintf(stderr, "shoal: %s%s%s\n", what ? what : "", what ? ": " : "", shoal_last_error());
    switch (s) {
    case SHOAL_E_TIMEOUT: return CLI_EXIT_TIMEOUT;
    case SHOAL_E_TRAP:
    case SHOAL_E_LIMIT: return CLI_EXIT_TRAP;
    default: return CLI_EXIT_ERROR;
    }
}

const char *cli_exe_dir(void)
{
    static char dir[PATH_MAX];
    if (!dir[0]) {
        ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
        if (n <= 0) return ".";
        dir[n] = '\0';
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
    }
    return dir;
}
