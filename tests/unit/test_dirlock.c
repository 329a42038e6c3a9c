/* Unit tests for common/dirlock.c: one holder per directory, the holder's
 * pid in the refusal, the lock free again once released, and the errors
 * for a directory that cannot be made. flock locks conflict between two
 * opens of the file even in one process, which is what lets one test
 * process play both daemons. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/dirlock.h"

static void test_one_holder(void **state)
{
    (void)state;
    char dir[] = "/tmp/dchat-dirlock-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[600];
    snprintf(sub, sizeof(sub), "%s/a/b", dir); /* made on the way */
    char err[1400];
    int fd = dirlock_take(sub, err, sizeof(err));
    assert_true(fd >= 0);

    /* The file says whose it is. */
    char path[700], line[32] = "";
    snprintf(path, sizeof(path), "%s/LOCK", sub);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    char want[32];
    snprintf(want, sizeof(want), "%ld\n", (long)getpid());
    assert_string_equal(line, want);

    /* A second taker is refused, told by whom, and what to do. */
    err[0] = '\0';
    assert_int_equal(dirlock_take(sub, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "(pid %ld,", (long)getpid());
    assert_non_null(strstr(err, "is in use by another process"));
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "--data-dir"));

    /* Released: free for the next. */
    dirlock_release(fd);
    int fd2 = dirlock_take(sub, err, sizeof(err));
    assert_true(fd2 >= 0);
    dirlock_release(fd2);
    dirlock_release(-1); /* nothing: no crash */

    unlink(path);
    snprintf(path, sizeof(path), "%s/a/b", dir);
    rmdir(path);
    snprintf(path, sizeof(path), "%s/a", dir);
    rmdir(path);
    rmdir(dir);
}

static void test_unusable_dir(void **state)
{
    (void)state;
    char file[] = "/tmp/dchat-dirlock-file-XXXXXX";
    int tmp = mkstemp(file);
    assert_true(tmp >= 0);
    close(tmp);
    char err[1400], sub[600];
    /* A file where the dir should be, and a dir under a file. */
    assert_int_equal(dirlock_take(file, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--data-dir"));
    snprintf(sub, sizeof(sub), "%s/sub", file);
    assert_int_equal(dirlock_take(sub, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot create data dir"));
    unlink(file);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_holder),
        cmocka_unit_test(test_unusable_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
