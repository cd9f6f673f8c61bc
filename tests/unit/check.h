/* A minimal test harness: CHECK records failures and keeps going. */
#ifndef NM_CHECK_H
#define NM_CHECK_H
#include <stdio.h>

static int checks_run, checks_failed;

#define CHECK(cond)                                                            \
    do {                                                                       \
        checks_run++;                                                          \
        if (!(cond)) {                                                         \
            checks_failed++;                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
        }                                                                      \
    } while (0)

static inline int check_summary(void)
{
    printf("%d passed, %d failed\n", checks_run - checks_failed, checks_failed);
    return checks_failed ? 1 : 0;
}
#endif
