/* LD_PRELOAD shim for the benchmarks: sipp up to 3.6.x reads its clock with
 * CLOCK_MONOTONIC_COARSE, which moves in 1/CONFIG_HZ steps (4 ms on a HZ=250 kernel such as
 * this VM's). Its calls then leave in bursts every 4 ms and its response times read in 4 ms
 * steps. Upstream sipp reads CLOCK_MONOTONIC since commit 511ad68 (February 2026); this shim
 * gives the packaged sipp that same clock and changes nothing else.
 *
 * Build: cc -shared -fPIC -O2 -o sipp_fine_clock.so sipp_fine_clock.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <time.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

int clock_gettime(clockid_t clock, struct timespec *ts)
{
    static clock_gettime_fn real;
    if (real == NULL)
        real = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    if (clock == CLOCK_MONOTONIC_COARSE)
        clock = CLOCK_MONOTONIC;
    return real(clock, ts);
}
