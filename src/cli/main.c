/* main.c — the shoal CLI entry point: subcommand dispatch, --help, --version. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f)
{
    fprintf(f, "shoal %s — WebAssembly actors that compute on their own memory\n\n"
               "usage: shoal <command> [options]\n\n"
               "commands:\n"
               "  run GUEST.wasm [ARGS...]   run a WASI command guest (shoal run --help)\n"
               "  bench zerocopy             the zero-copy seed experiment (shoal bench --help)\n"
               "  actor GUEST.wasm           drive an actor from stdin; save, load, fork (shoal actor --help)\n"
               "  snapshot inspect FILE      print what a snapshot holds\n\n"
               "  -h, --help                 this help\n"
               "  -V, --version              print the version\n",
            SHOAL_VERSION);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("shoal %s (Wasmtime 50.0.1 C API)\n", SHOAL_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "actor")) return cmd_actor(argc - 1, argv + 1);
    if (!strcmp(cmd, "snapshot")) return cmd_snapshot(argc - 1, argv + 1);
    fprintf(stderr, "shoal: unknown command \"%s\"\n", cmd);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
