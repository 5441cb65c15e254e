/* The ringmaster command itself: flags, config checking, signals. */

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support.h"

static char output[65536];

static void binary_require(void)
{
    cr_assert_not_null(test_binary(), "RINGMASTER_BIN must name the built binary (make test)");
}

static void write_file(const char *path, const char *text)
{
    FILE *file = fopen(path, "w");
    cr_assert_not_null(file);
    fputs(text, file);
    fclose(file);
}

Test(binary, version_and_help)
{
    binary_require();
    char command[1024];
    snprintf(command, sizeof(command), "%s --version", test_binary());
    cr_assert_eq(test_run(command, output, sizeof(output)), 0);
    cr_assert_eq(strncmp(output, "ringmaster ", 11), 0);
    snprintf(command, sizeof(command), "%s --help", test_binary());
    cr_assert_eq(test_run(command, output, sizeof(output)), 0);
    cr_assert_not_null(strstr(output, "--check-config"));
    snprintf(command, sizeof(command), "%s --bogus 2>&1", test_binary());
    cr_assert_eq(test_run(command, output, sizeof(output)), 2);
}

/* mimalloc must be the allocator of the whole process (it replaces malloc for the libraries
 * too), which its statistics at exit prove. Sanitizer builds use the C library on purpose. */
Test(binary, mimalloc_is_the_process_allocator)
{
    binary_require();
    char command[1024];
    snprintf(command, sizeof(command), "ldd %s", test_binary());
    test_run(command, output, sizeof(output));
    if (strstr(output, "libasan") != NULL || strstr(output, "libtsan") != NULL) {
        cr_skip_test("sanitizer build: allocations go through the sanitizer");
    }
    snprintf(command, sizeof(command), "MIMALLOC_SHOW_STATS=1 %s --version 2>&1", test_binary());
    cr_assert_eq(test_run(command, output, sizeof(output)), 0);
    cr_assert_not_null(strstr(output, "heap stats:"), "%s", output);
}

Test(binary, check_config_names_file_line_and_key)
{
    binary_require();
    char directory[] = "/tmp/rm-binary-XXXXXX";
    cr_assert_not_null(mkdtemp(directory));
    char good[256], bad[256], command[1024];
    snprintf(good, sizeof(good), "%s/good.json", directory);
    snprintf(bad, sizeof(bad), "%s/bad.json", directory);
    write_file(good, "{\n  \"listen\": \"127.0.0.1:0\",\n  \"threads\": 1\n}\n");
    write_file(bad, "{\n  \"listen\": \"127.0.0.1:0\",\n  \"limits\": {\n    \"max_hedaers\": 3\n"
                    "  }\n}\n");
    snprintf(command, sizeof(command), "%s --check-config %s 2>&1", test_binary(), good);
    cr_assert_eq(test_run(command, output, sizeof(output)), 0, "%s", output);
    snprintf(command, sizeof(command), "%s --check-config %s 2>&1", test_binary(), bad);
    cr_assert_eq(test_run(command, output, sizeof(output)), 1);
    cr_assert_not_null(strstr(output, "bad.json:4"), "%s", output);
    cr_assert_not_null(strstr(output, "limits.max_hedaers"), "%s", output);
    unlink(good);
    unlink(bad);
    rmdir(directory);
}

Test(binary, sigterm_drains_and_exits_zero_and_sighup_reopens_log)
{
    binary_require();
    char directory[] = "/tmp/rm-binary-XXXXXX";
    cr_assert_not_null(mkdtemp(directory));
    char config_path[256], log_path[256], rotated[256], config[1024];
    snprintf(config_path, sizeof(config_path), "%s/config.json", directory);
    snprintf(log_path, sizeof(log_path), "%s/ringmaster.log", directory);
    snprintf(rotated, sizeof(rotated), "%s/ringmaster.log.1", directory);
    snprintf(config, sizeof(config),
             "{\"listen\": \"127.0.0.1:0\", \"threads\": 2, \"data_dir\": \"%s/data\", "
             "\"log\": {\"file\": \"%s\"}}",
             directory, log_path);
    write_file(config_path, config);
    struct test_process process;
    test_process_start(&process, config_path);
    int fd = test_connect(process.port);
    test_send_text(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_gt(test_read_response(fd, output, sizeof(output)), 0);
    cr_assert_eq(test_status(output), 200);
    cr_assert_eq(rename(log_path, rotated), 0);
    kill(process.pid, SIGHUP);
    struct stat info;
    for (int i = 0; i < 200 && stat(log_path, &info) != 0; i++) {
        usleep(10000);
    }
    cr_assert_eq(stat(log_path, &info), 0, "SIGHUP did not reopen the log");
    cr_assert_eq(test_process_stop(&process, SIGTERM), 0);
    cr_assert(test_peer_closed(fd), "the idle keep-alive connection was not closed");
    close(fd);
    char command[1024];
    snprintf(command, sizeof(command), "cat %s %s", rotated, log_path);
    test_run(command, output, sizeof(output));
    cr_assert_not_null(strstr(output, "\"msg\":\"engine started\""), "%s", output);
    cr_assert_not_null(strstr(output, "\"msg\":\"engine stopped\""), "%s", output);
    snprintf(command, sizeof(command), "rm -rf '%s'", directory);
    cr_assert_eq(system(command), 0);
}
