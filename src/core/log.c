/* log.c - informational messages through a replaceable handler. */
#include "blixt/core.h"

#include <stdarg.h>
#include <stdio.h>

static void default_log(void *ud, bx_log_level level, const char *msg) {
    (void)ud;
    static const char *names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
    if (level == BX_LOG_DEBUG) return;
    fprintf(stderr, "[blixt %s] %s\n", names[level], msg);
}

static bx_log_fn g_log = default_log;
static void *g_log_ud = NULL;

void bx_set_log_handler(bx_log_fn fn, void *ud) {
    g_log = fn ? fn : default_log;
    g_log_ud = fn ? ud : NULL;
}

void bx_logf(bx_log_level level, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_log(g_log_ud, level, buf);
}
