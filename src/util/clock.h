/* clock.h — seconds on the monotonic clock, for durations and rates in logs and reports. */
#ifndef VT_CLOCK_H
#define VT_CLOCK_H

double vt_seconds(void);

#endif
