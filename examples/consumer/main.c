/* main.c - a program built against an installed Blixt (find_package or
 * pkg-config): makes a tensor, runs one op, checks the result, prints OK. */
#include <blixt.h>
#include <stdio.h>

int main(void) {
    const int64_t shape[2] = {2, 3};
    bx_tensor *a = bx_tensor_new(BX_F32, 2, shape);
    bx_step *st = bx_step_new();
    if (!a || !st) {
        fprintf(stderr, "consumer: out of memory\n");
        return 1;
    }
    float *d = a->data;
    for (int i = 0; i < 6; i++) d[i] = (float)i - 2.0f; /* -2 -1 0 1 2 3 */
    bx_tensor *y = bx_relu(st, bx_add(st, a, a));       /* 0 0 0 2 4 6 */
    if (bx_step_status(st) != BX_OK) {
        fprintf(stderr, "consumer: %s\n", bx_step_errmsg(st));
        return 1;
    }
    const double want[6] = {0, 0, 0, 2, 4, 6};
    for (int i = 0; i < 6; i++) {
        if (bx_get(y, i) != want[i]) {
            fprintf(stderr, "consumer: y[%d] = %g, want %g\n", i, bx_get(y, i), want[i]);
            return 1;
        }
    }
    bx_step_free(st);
    bx_tensor_free(a);
    printf("OK\n");
    return 0;
}
