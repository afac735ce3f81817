/* cmd_run.c — `shoal run GUEST.wasm [ARGS...]`: run a WASI command guest. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: shoal run [OPTIONS] GUEST.wasm [ARGS...]\n\n"
               "Runs a WASI (preview 1) command module. The guest's exit status becomes shoal's;\n"
               "a trap prints its message and exits %d, a timeout exits %d.\n\nOptions:\n%s"
               "  -h, --help              this help\n",
            CLI_EXIT_TRAP, CLI_EXIT_TIMEOUT, cli_common_help);
}

/* Runs argv[0] (the module path) with argv as its WASI argv. Shared with `shoal bench`. */
int cli_run_guest(cli_common *c, int argc, char **argv)
{
    shoal_runtime_t *rt = NULL;
    shoal_module_t *mod = NULL;
    shoal_instance_t *inst = NULL;
    int code = CLI_EXIT_ERROR;
    shoal_status_t s = shoal_runtime_new(&c->rt, &rt);
    if (s != SHOAL_OK) return cli_report(s, "cannot start the runtime");
    if (c->rt.device == SHOAL_DEVICE_AUTO) fprintf(stderr, "shoal: device: %s\n", shoal_runtime_device(rt));
    if (cli_preload_models(c, rt) != 0) goto out;
    s = shoal_module_load(rt, argv[0], &mod);
    if (s != SHOAL_OK) {
        code = cli_report(s, "cannot load guest");
        goto out;
    }
    c->inst.argc = argc;
    c->inst.argv = (const char *const *)argv;
    c->inst.envc = c->nenv;
    c->inst.env = c->env;
    c->inst.ndirs = c->ndirs;
    c->inst.dir_host = c->dir_host;
    c->inst.dir_guest = c->dir_guest;
    s = shoal_instance_new(rt, mod, &c->inst, &inst);
    if (s != SHOAL_OK) {
        code = cli_report(s, argv[0]);
        goto out;
    }
    int exit_code = 0;
    fflush(stdout);
    s = shoal_instance_run(inst, &exit_code);
    code = s == SHOAL_OK ? exit_code : cli_report(s, argv[0]);
out:
    shoal_instance_delete(inst);
    shoal_module_delete(mod);
    shoal_runtime_delete(rt);
    return code;
}

int cmd_run(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c);
    int i = 1, code;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            cli_common_free(&c);
            return 0;
        }
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        }
        if (argv[i][0] != '-') break;
        int r = cli_common_parse(&c, argc, argv, &i);
        if (r < 0) {
            cli_common_free(&c);
            return CLI_EXIT_USAGE;
        }
        if (r == 0) {
            fprintf(stderr, "shoal run: unknown option %s\n", argv[i]);
            usage(stderr);
            cli_common_free(&c);
            return CLI_EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        cli_common_free(&c);
        return CLI_EXIT_USAGE;
    }
    code = cli_run_guest(&c, argc - i, argv + i);
    cli_common_free(&c);
    return code;
}
