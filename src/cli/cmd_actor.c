/* cmd_actor.c — `shoal actor GUEST.wasm`: drive an actor from stdin, one message per line,
 * with commands to save, load and fork it. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

#define MAX_ACTORS 64

static void usage(FILE *f)
{
    fprintf(f, "usage: shoal actor [OPTIONS] GUEST.wasm [--load SNAPSHOT]\n\n"
               "Starts an actor (a reactor module exporting shoal_actor_init and shoal_actor_handle; see\n"
               "guests/include/shoal_actor.h), or restores one from a snapshot, and sends it each line of\n"
               "standard input as a message, printing each reply on its own line. Lines starting with ':'\n"
               "are commands:\n"
               "  :save FILE [I]   snapshot actor I (default 0) to FILE\n"
               "  :load FILE       replace the actors with one restored from FILE (kept as is on failure)\n"
               "  :fork N          replace actor 0 and the others by N copies of actor 0; later messages\n"
               "                   go to every copy and replies print as \"[i] reply\"\n"
               "  :join I          keep only actor I\n"
               "  :quit            exit (so does end of input)\n"
               "A failed command or message prints \"error: ...\" on stderr and leaves the actors as they were;\n"
               "the exit status is 1 if anything failed.\n\nOptions:\n%s"
               "  --load FILE             start from a snapshot instead of shoal_actor_init\n"
               "  -h, --help              this help\n",
            cli_common_help);
}

typedef struct session {
    shoal_runtime_t *rt;
    shoal_module_t *mod;
    const shoal_instance_config_t *cfg;
    shoal_instance_t *a[MAX_ACTORS];
    int n;
    int failures;
} session_t;

static void error_line(session_t *s, const char *what)
{
    fprintf(stderr, "error: %s%s%s\n", what, *shoal_last_error() ? ": " : "", shoal_last_error());
    s->failures++;
}

static void drop_all(session_t *s)
{
    for (int i = 0; i < s->n; i++) shoal_instance_delete(s->a[i]);
    s->n = 0;
}

static void do_load(session_t *s, const char *path)
{
    shoal_instance_t *inst = NULL;
    if (shoal_instance_snapshot_restore(s->rt, s->mod, s->cfg, path, &inst) != SHOAL_OK) {
        error_line(s, "load refused");
        return;
    }
    drop_all(s);
    s->a[s->n++] = inst;
    printf("loaded %s\n", path);
}

static void do_fork(session_t *s, int n)
{
    if (n < 1 || n > MAX_ACTORS) {
        fprintf(stderr, "error: fork count must be 1..%d\n", MAX_ACTORS);
        s->failures++;
        return;
    }
    /* A fork is a snapshot restored n times: the copies share nothing but the file's bytes. */
    char tmpl[] = "/tmp/shoal-fork-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) {
        fprintf(stderr, "error: fork: cannot create a temporary file\n");
        s->failures++;
        return;
    }
    close(fd);
    shoal_instance_t *copies[MAX_ACTORS];
    int made = 0;
    bool ok = shoal_instance_snapshot_save(s->a[0], s->mod, tmpl) == SHOAL_OK;
    for (; ok && made < n; made++)
        ok = shoal_instance_snapshot_restore(s->rt, s->mod, s->cfg, tmpl, &copies[made]) == SHOAL_OK;
    if (!ok) {
        error_line(s, "fork failed");
        for (int i = 0; i < made - 1; i++) shoal_instance_delete(copies[i]);
    } else {
        drop_all(s);
        memcpy(s->a, copies, (size_t)n * sizeof copies[0]);
        s->n = n;
        printf("forked into %d\n", n);
    }
    unlink(tmpl);
}

static void do_message(session_t *s, const char *line, size_t len)
{
    for (int i = 0; i < s->n; i++) {
        char *reply = NULL;
        size_t rlen = 0;
        if (shoal_actor_send(s->a[i], line, len, &reply, &rlen) != SHOAL_OK) {
            char what[32];
            snprintf(what, sizeof what, "actor %d", i);
            error_line(s, what);
            continue;
        }
        if (s->n > 1) printf("[%d] ", i);
        fwrite(reply, 1, rlen, stdout);
        putchar('\n');
        free(reply);
    }
}

static int session_loop(session_t *s)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (line[0] != ':') {
            do_message(s, line, (size_t)len);
        } else {
            char cmd[16] = "", arg[4096] = "";
            int idx = 0;
            int nf = sscanf(line, ":%15s %4095s %d", cmd, arg, &idx);
            if (!strcmp(cmd, "quit")) break;
            if (!strcmp(cmd, "save") && nf >= 2) {
                if (idx < 0 || idx >= s->n) {
                    fprintf(stderr, "error: no actor %d\n", idx);
                    s->failures++;
                } else if (shoal_instance_snapshot_save(s->a[idx], s->mod, arg) != SHOAL_OK) {
                    error_line(s, "save failed");
                } else {
                    printf("saved %s\n", arg);
                }
            } else if (!strcmp(cmd, "load") && nf >= 2) {
                do_load(s, arg);
            } else if (!strcmp(cmd, "fork") && nf >= 2) {
                do_fork(s, atoi(arg));
            } else if (!strcmp(cmd, "join") && nf >= 2) {
                int k = atoi(arg);
                if (k < 0 || k >= s->n) {
                    fprintf(stderr, "error: no actor %d\n", k);
                    s->failures++;
                } else {
                    for (int i = 0; i < s->n; i++)
                        if (i != k) shoal_instance_delete(s->a[i]);
                    s->a[0] = s->a[k];
                    s->n = 1;
                    printf("joined %d\n", k);
                }
            } else {
                fprintf(stderr, "error: unknown command \"%s\" (:save FILE [I], :load FILE, :fork N, :join I, :quit)\n", line);
                s->failures++;
            }
        }
        fflush(stdout);
    }
    free(line);
    return s->failures ? CLI_EXIT_ERROR : 0;
}

int cmd_actor(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c);
    const char *load = NULL, *guest = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            cli_common_free(&c);
            return 0;
        }
        if (!strcmp(argv[i], "--load")) {
            if (++i >= argc) {
                fprintf(stderr, "shoal actor: --load needs a file\n");
                cli_common_free(&c);
                return CLI_EXIT_USAGE;
            }
            load = argv[i];
            continue;
        }
        if (argv[i][0] != '-' && !guest) {
            guest = argv[i];
            continue;
        }
        int r = cli_common_parse(&c, argc, argv, &i);
        if (r <= 0) {
            if (r == 0) fprintf(stderr, "shoal actor: unknown argument %s\n", argv[i]), usage(stderr);
            cli_common_free(&c);
            return CLI_EXIT_USAGE;
        }
    }
    if (!guest) {
        usage(stderr);
        cli_common_free(&c);
        return CLI_EXIT_USAGE;
    }
    c.inst.envc = c.nenv;
    c.inst.env = c.env;
    c.inst.ndirs = c.ndirs;
    c.inst.dir_host = c.dir_host;
    c.inst.dir_guest = c.dir_guest;
    const char *argv0[1] = {guest};
    c.inst.argc = 1;
    c.inst.argv = argv0;
    session_t s = {.cfg = &c.inst};
    int code = 0;
    shoal_status_t st = shoal_runtime_new(&c.rt, &s.rt);
    if (st != SHOAL_OK) code = cli_report(st, "cannot start the runtime");
    if (!code && cli_preload_models(&c, s.rt) != 0) code = CLI_EXIT_ERROR;
    if (!code && (st = shoal_module_load(s.rt, guest, &s.mod)) != SHOAL_OK) code = cli_report(st, "cannot load guest");
    if (!code) {
        st = load ? shoal_instance_snapshot_restore(s.rt, s.mod, s.cfg, load, &s.a[0])
                  : shoal_actor_start(s.rt, s.mod, s.cfg, &s.a[0]);
        if (st != SHOAL_OK) code = cli_report(st, load ? "cannot restore the actor" : "cannot start the actor");
        else s.n = 1;
    }
    if (!code) code = session_loop(&s);
    drop_all(&s);
    shoal_module_delete(s.mod);
    shoal_runtime_delete(s.rt);
    cli_common_free(&c);
    return code;
}
