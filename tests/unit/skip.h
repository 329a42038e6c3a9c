/* skip_because(): cmocka's skip() with the reason printed, so that the test
 * log says why a test did not run (scripts/run-tests.sh counts it as
 * skipped, never as failed). Include after <cmocka.h>. */
#ifndef DCHAT_TESTS_SKIP_H
#define DCHAT_TESTS_SKIP_H

#define skip_because(why)                                   \
    do {                                                    \
        print_message("skipping: %s\n", (why));            \
        skip();                                             \
    } while (0)

#endif
