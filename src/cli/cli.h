/* cli.h — the shoal command line: shared option parsing and the subcommands. */
#ifndef SHOAL_CLI_H
#define SHOAL_CLI_H

#include <stdint.h>

#include "shoal.h"

/* Exit statuses of the CLI itself; a guest's own exit status passes through unchanged. */
enum { CLI_EXIT_ERROR = 1, CLI_EXIT_USAGE = 2, CLI_EXIT_TIMEOUT = 124, CLI_EXIT_TRAP = 134 };

/* Options every subcommand that runs guests accepts. */
typedef struct cli_common {
    shoal_runtime_config_t rt;
    shoal_instance_config_t inst;
    const char *env[256];
    int nenv;
    const char *dir_host[64], *dir_guest[64];
    int ndirs;
    char *owned[64]; /* strings split out of --dir values */
    int nowned;
    /* --nn-preload NAME:ENCODING:TARGET:PATH, loaded into the runtime before the guest starts */
    const char *preload_name[16], *preload_path[16];
    shoal_device_kind_t preload_device[16];
    int npreload;
} cli_common;

void cli_common_init(cli_common *c);
void cli_common_free(cli_common *c);
/* Consumes argv[*i] (and its value) if it is a common option. Returns 1 if consumed, 0 if not
 * an option of ours, -1 after printing an error. */
int cli_common_parse(cli_common *c, int argc, char **argv, int *i);
extern const char *const cli_common_help;

/* "512M", "2GiB", "65536" -> bytes; "10s", "250ms", "1500" (ms) -> ms. 0 on success. */
int cli_parse_size(const char *s, uint64_t *out);
int cli_parse_duration_ms(const char *s, uint64_t *out);
/* Maps a failing status to the CLI exit code and prints "shoal: <message>". */
int cli_report(shoal_status_t s, const char *what);
/* Loads the --nn-preload models into rt; prints the error and returns non-zero on failure. */
int cli_preload_models(const cli_common *c, shoal_runtime_t *rt);

int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_actor(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
/* Directory holding this executable (for finding bundled guests). */
const char *cli_exe_dir(void);

#endif
