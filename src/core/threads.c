/* threads.c - worker thread count (OpenMP, shared with oneDNN). */
#include "blixt/core.h"

#include <omp.h>

void bx_set_num_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
}

int bx_get_num_threads(void) { return omp_get_max_threads(); }
