/* wasi_probe.c — exercises WASI preview 1 through the CLI: argv, env, stdio, preopened
 * directories and exit codes. usage: wasi_probe CMD [ARGS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "wasi_probe: no command\n");
        return 3;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "args")) {
        for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
        return 0;
    }
    if (!strcmp(cmd, "env") && argc > 2) {
        const char *v = getenv(argv[2]);
        printf("%s=%s\n", argv[2], v ? v : "(unset)");
        return v ? 0 : 1;
    }
    if (!strcmp(cmd, "exit") && argc > 2) return atoi(argv[2]);
    if (!strcmp(cmd, "cat") && argc > 2) {
        FILE *f = fopen(argv[2], "r");
        if (!f) {
            perror(argv[2]);
            return 4;
        }
        char buf[256];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
        fclose(f);
        return 0;
    }
    if (!strcmp(cmd, "write") && argc > 3) {
        FILE *f = fopen(argv[2], "w");
        if (!f) {
            perror(argv[2]);
            return 4;
        }
        fputs(argv[3], f);
        fclose(f);
        return 0;
    }
    if (!strcmp(cmd, "echo")) { /* stdin -> stdout, uppercased */
        int ch;
        while ((ch = getchar()) != EOF) putchar(ch >= 'a' && ch <= 'z' ? ch - 32 : ch);
        return 0;
    }
    if (!strcmp(cmd, "spin")) { /* never returns: --timeout / --fuel must stop it */
        volatile unsigned long x = 0;
        for (;;) x++;
    }
    if (!strcmp(cmd, "hog")) { /* allocates until malloc fails, then aborts like a real OOM */
        /* Blocks are chained so the compiler cannot drop the unused allocations. */
        void **head = NULL;
        size_t total = 0;
        for (;;) {
            void **p = malloc(1 << 20);
            if (!p) {
                fprintf(stderr, "wasi_probe: out of memory after %zu MiB\n", total >> 20);
                abort();
            }
            memset(p, 1, 1 << 20);
            *p = head;
            head = p;
            total += 1 << 20;
            __asm__ volatile("" : : "r"(head) : "memory");
        }
    }
    if (!strcmp(cmd, "trap")) {
        __builtin_trap();
    }
    fprintf(stderr, "wasi_probe: unknown command %s\n", cmd);
    return 3;
}
