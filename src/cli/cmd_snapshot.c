/* cmd_snapshot.c — `shoal snapshot inspect FILE`: what a snapshot holds. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: shoal snapshot inspect FILE\n\n"
               "Validates a snapshot (format version, length, checksum, structure) and prints what it\n"
               "holds: the module it belongs to, its linear memory (size, stored pages), its globals\n"
               "and the state of each layer (e.g. the KV cache tensors and model identity).\n");
}

int cmd_snapshot(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (argc != 3 || strcmp(argv[1], "inspect")) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    shoal_status_t s = shoal_snapshot_inspect(argv[2], stdout);
    return s == SHOAL_OK ? 0 : cli_report(s, "cannot read the snapshot");
}
