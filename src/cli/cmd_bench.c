/* cmd_bench.c — `shoal bench zerocopy`: the seed experiment, run by the bundled bench guest. */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

int cli_run_guest(cli_common *c, int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(f, "usage: shoal bench zerocopy [OPTIONS] [--sizes 128,256,..] [--placements zerocopy,copy,resident]\n"
               "                            [--reps N] [--no-rss] [--guest PATH]\n\n"
               "A Wasm guest fills A and B in its own memory, the backend multiplies them in place, and the\n"
               "guest checks C against float64. Prints latency per size and placement, pointer identity,\n"
               "errors, and the RSS growth of exposing a 16 MiB region (zero-copy vs staging copy).\n\n"
               "Options:\n%s",
            cli_common_help);
}

/* The bundled guests sit in guests/ next to the binary (build tree), or $SHOAL_GUESTS. */
static int find_guest(const char *name, char *out, size_t cap)
{
    const char *env = getenv("SHOAL_GUESTS");
    if (env) {
        snprintf(out, cap, "%s/%s", env, name);
        if (access(out, R_OK) == 0) return 0;
    }
    snprintf(out, cap, "%s/guests/%s", cli_exe_dir(), name);
    return access(out, R_OK);
}

static void print_machine(const char *device)
{
    char cpu[256] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) snprintf(cpu, sizeof cpu, "%s", p + 2);
            cpu[strcspn(cpu, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    printf("shoal %s zero-copy benchmark, %s\nhost: %s, %ld cores\ndevice: %s\n\n", SHOAL_VERSION, date, cpu,
           sysconf(_SC_NPROCESSORS_ONLN), device);
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "zerocopy") != 0) {
        if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
            usage(stdout);
            return 0;
        }
        fprintf(stderr, "shoal bench: unknown benchmark%s%s (available: zerocopy)\n", argc >= 2 ? " " : "",
                argc >= 2 ? argv[1] : "");
        return CLI_EXIT_USAGE;
    }
    cli_common c;
    cli_common_init(&c);
    char guest[PATH_MAX] = "";
    char *gargv[64];
    int gargc = 1, code;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            cli_common_free(&c);
            return 0;
        }
        if (!strcmp(argv[i], "--guest") && i + 1 < argc) {
            snprintf(guest, sizeof guest, "%s", argv[++i]);
            continue;
        }
        int r = cli_common_parse(&c, argc, argv, &i);
        if (r < 0) {
            cli_common_free(&c);
            return CLI_EXIT_USAGE;
        }
        if (r == 0) {
            if (gargc >= 63) break;
            gargv[gargc++] = argv[i]; /* the guest validates its own options */
        }
    }
    if (!guest[0] && find_guest("bench_zerocopy.wasm", guest, sizeof guest) != 0) {
        fprintf(stderr, "shoal bench: bench_zerocopy.wasm not found next to the binary or in $SHOAL_GUESTS\n");
        cli_common_free(&c);
        return CLI_EXIT_ERROR;
    }
    gargv[0] = guest;
    gargv[gargc] = NULL;
    shoal_runtime_t *probe = NULL;
    if (shoal_runtime_new(&c.rt, &probe) != SHOAL_OK) {
        code = cli_report(SHOAL_E_DEVICE, "cannot start the runtime");
        cli_common_free(&c);
        return code;
    }
    print_machine(shoal_runtime_device(probe));
    shoal_runtime_delete(probe);
    fflush(stdout);
    code = cli_run_guest(&c, gargc, gargv);
    cli_common_free(&c);
    return code;
}
