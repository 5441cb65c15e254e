/* The ringmaster command: parse arguments, load the config, run the engine until SIGTERM or
 * SIGINT. Signals arrive through a signalfd on the main thread (which is not a reactor, so
 * it may block); every reactor thread inherits the blocked mask and never sees them. */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/ringmaster.h"

#define MAIN_ERROR_MAX 1024

static void main_usage(FILE *out)
{
    fprintf(out,
            "usage: ringmaster [--config FILE]\n"
            "       ringmaster --check-config FILE\n"
            "       ringmaster --help | --version\n"
            "\n"
            "Runs the Ringmaster engine. Without --config it runs on the embedded default\n"
            "configuration (listen 127.0.0.1:8080, one reactor per core, data in\n"
            "./ringmaster-data). SIGTERM or SIGINT drain and stop; SIGHUP reopens the log.\n");
}

static int main_check_config(const char *path)
{
    static struct config config;
    char err[MAIN_ERROR_MAX];
    if (config_load(&config, path, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("%s: ok\n", path);
    return 0;
}

static int main_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGPIPE);
    if (pthread_sigmask(SIG_BLOCK, set, NULL) != 0) {
        return -1;
    }
    return signalfd(-1, set, SFD_CLOEXEC);
}

static void main_wait_for_stop(struct rm_engine *engine, int signal_fd)
{
    for (;;) {
        struct signalfd_siginfo info;
        ssize_t got = read(signal_fd, &info, sizeof(info));
        if (got != (ssize_t)sizeof(info)) {
            if (got < 0 && errno == EINTR) {
                continue;
            }
            log_error("reading signals failed; stopping", "error", strerror(errno));
            return;
        }
        if (info.ssi_signo == SIGHUP) {
            int result = rm_engine_reopen_log(engine);
            if (result != 0) {
                log_error("reopening the log failed; still writing to the old file", "error",
                          strerror(-result));
            }
            continue;
        }
        if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) {
            log_info("signal received; draining", "signal", strsignal((int)info.ssi_signo));
            return;
        }
    }
}

static int main_run(const char *config_path)
{
    sigset_t set;
    int signal_fd = main_signals(&set);
    if (signal_fd < 0) {
        fprintf(stderr, "ringmaster: cannot set up signal handling: %s\n", strerror(errno));
        return 1;
    }
    char err[MAIN_ERROR_MAX];
    struct rm_engine *engine = NULL;
    int result = config_path != NULL ? rm_engine_create_file(config_path, &engine, err, sizeof(err))
                                     : rm_engine_create_json("{}", &engine, err, sizeof(err));
    if (result == 0) {
        result = rm_engine_start(engine, err, sizeof(err));
    }
    if (result != 0) {
        fprintf(stderr, "ringmaster: %s\n", err);
        rm_engine_destroy(engine);
        close(signal_fd);
        return 1;
    }
    fprintf(stderr, "ringmaster %s listening on port %u with %u reactors\n", rm_version(),
            rm_engine_port(engine), rm_engine_threads(engine));
    main_wait_for_stop(engine, signal_fd);
    rm_engine_stop(engine);
    rm_engine_wait(engine);
    rm_engine_destroy(engine);
    close(signal_fd);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            main_usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("ringmaster %s\n", rm_version());
            return 0;
        }
        if (strcmp(argv[i], "--check-config") == 0 && i + 1 < argc) {
            return main_check_config(argv[i + 1]);
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
            continue;
        }
        fprintf(stderr, "ringmaster: unknown or incomplete argument '%s'\n\n", argv[i]);
        main_usage(stderr);
        return 2;
    }
    return main_run(config_path);
}
