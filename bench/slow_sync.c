/* A Pi's SD card, for a process on a fast disk: fsync and fdatasync made slow.
 *
 * Loaded with LD_PRELOAD. Each call does the real sync, then sleeps:
 *   KIOSK_SLOW_SYNC_MS         milliseconds every call waits (the median; default 0)
 *   KIOSK_SLOW_SYNC_TAIL_MS    milliseconds one call in KIOSK_SLOW_SYNC_TAIL_EVERY waits instead
 *   KIOSK_SLOW_SYNC_COUNT_FILE where the number of calls so far is kept (rewritten at each call:
 *                              a server stopped by a signal runs no exit handler)
 * The tail falls on every N-th call, not at random, so that two runs wait alike.
 * Sleeping releases nothing the caller holds: a caller that syncs on its event loop's thread
 * stalls for the whole wait, as it would on the card.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static atomic_long calls;

static double setting(const char *name) {
    const char *value = getenv(name);
    return value ? atof(value) : 0.0;
}

static void count(long n) {
    static int out = -2;
    if (out == -2) {
        const char *path = getenv("KIOSK_SLOW_SYNC_COUNT_FILE");
        out = path ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    }
    if (out < 0)
        return;
    char line[24];
    int length = snprintf(line, sizeof line, "%20ld\n", n);
    if (pwrite(out, line, (size_t)length, 0) < 0) {
        /* A count is a convenience: the sync itself went through. */
    }
}

static void wait_as_the_card_would(void) {
    long n = atomic_fetch_add(&calls, 1) + 1;
    count(n);
    double every = setting("KIOSK_SLOW_SYNC_TAIL_EVERY");
    double ms = setting("KIOSK_SLOW_SYNC_MS");
    if (every >= 1 && n % (long)every == 0)
        ms = setting("KIOSK_SLOW_SYNC_TAIL_MS");
    if (ms <= 0)
        return;
    struct timespec left = {(time_t)(ms / 1000), (long)((ms - (long)(ms / 1000) * 1000) * 1e6)};
    int saved = errno;
    while (nanosleep(&left, &left) == -1 && errno == EINTR) {
    }
    errno = saved;
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int result = real(fd);
    wait_as_the_card_would();
    return result;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int result = real(fd);
    wait_as_the_card_would();
    return result;
}
