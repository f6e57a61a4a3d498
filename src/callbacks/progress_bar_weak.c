/* progress_bar_weak.c - fallback bx_progress_bar_new (weak symbol) so the
 * Trainer links before the progress-bar helper's callback lands; a real
 * bx_progress_bar_new overrides it at link time. Delete once
 * src/callbacks/progress_bar*.c defines it. */
#include "blixt/callbacks.h"

static const bx_callback_ops PB_OPS = {.name = "ProgressBar"};

/* A ProgressBar that draws nothing; caller owns it. */
__attribute__((weak)) bx_callback *bx_progress_bar_new(void) { return bx_callback_new(&PB_OPS, NULL); }
