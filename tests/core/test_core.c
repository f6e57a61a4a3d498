/* test_core.c - status text, error messages, allocator hook, arena, RNG. */
#include "test_util.h"

#include "core/arena.h"
#include "core/core_int.h"

static uint64_t hook_calls;
static void *counting_alloc(void *ud, void *ptr, size_t old_size, size_t new_size) {
    (void)ud;
    (void)old_size;
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    hook_calls++;
    void *p = NULL;
    if (posix_memalign(&p, 64, new_size)) return NULL;
    if (ptr) {
        memcpy(p, ptr, old_size < new_size ? old_size : new_size);
        free(ptr);
    }
    return p;
}

static void test_errors(void) {
    CHECK(strcmp(bx_status_str(BX_ERR_SHAPE), "shape mismatch") == 0);
    CHECK(bx__error(BX_ERR_INVALID, "thing %d: bad", 3) == BX_ERR_INVALID);
    CHECK(strcmp(bx_errmsg(), "thing 3: bad") == 0);
    bx__error_prefix("ctx");
    CHECK(strcmp(bx_errmsg(), "ctx: thing 3: bad") == 0);
    bx_clear_error();
    CHECK(bx_errmsg()[0] == '\0');
    /* the public pair, for code outside the library */
    CHECK(bx_set_error(BX_ERR_NOT_FOUND, "metric '%s' missing", "val_acc") == BX_ERR_NOT_FOUND);
    bx_error_context("callback %s", "Mine");
    CHECK(strcmp(bx_errmsg(), "callback Mine: metric 'val_acc' missing") == 0);
    bx_clear_error();
}

static void test_alloc_hook(void) {
    bx_set_allocator(counting_alloc, NULL);
    uint64_t before = bx_alloc_count();
    int64_t shape[2] = {3, 4};
    bx_tensor *t = bx_tensor_zeros(BX_F32, 2, shape);
    CHECK(t != NULL);
    CHECK(hook_calls >= 1);
    CHECK(bx_alloc_count() == before + 1);
    CHECK(((uintptr_t)t->data & 63) == 0);
    bx_tensor_free(t);
    bx_tensor_free(NULL);
    /* the public helpers go through the same hook */
    uint64_t calls = hook_calls;
    char *s = bx_strdup("abc");
    int *z = bx_calloc(16 * sizeof(int));
    CHECK(s && strcmp(s, "abc") == 0 && z && z[15] == 0 && ((uintptr_t)z & 63) == 0);
    z = bx_realloc(z, 64 * sizeof(int));
    CHECK(z && z[0] == 0);
    CHECK(hook_calls == calls + 3);
    CHECK(bx_strdup(NULL) == NULL);
    bx_free(s);
    bx_free(z);
    bx_free(NULL);
    bx_set_allocator(NULL, NULL);
}

static void test_arena(void) {
    bx__arena a;
    bx__arena_init(&a);
    /* step 1 spills into several blocks */
    for (int i = 0; i < 5; i++) CHECK(bx__arena_alloc(&a, 700000) != NULL);
    bx__arena_reset(&a);
    uint64_t before = bx_alloc_count();
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 5; i++) {
            void *p = bx__arena_alloc(&a, 700000);
            CHECK(p != NULL && ((uintptr_t)p & 63) == 0);
        }
        bx__arena_reset(&a);
    }
    CHECK_EQ_INT(bx_alloc_count(), before);
    bx__arena_destroy(&a);
}

static void test_step_steady_state(void) {
    bx_step *st = bx_step_new();
    int64_t shape[2] = {64, 1000};
    for (int i = 0; i < 3; i++) {
        bx_tensor *x = bx_step_zeros(st, BX_F32, 2, shape);
        bx_tensor *y = bx_relu(st, x);
        CHECK(!bx_is_poison(y));
        bx_step_reset(st);
    }
    uint64_t before = bx_alloc_count();
    for (int i = 0; i < 5; i++) {
        bx_tensor *x = bx_step_zeros(st, BX_F32, 2, shape);
        bx_relu(st, x);
        bx_step_reset(st);
    }
    CHECK_EQ_INT(bx_alloc_count(), before);
    /* use after reset is caught */
    bx_tensor *x = bx_step_zeros(st, BX_F32, 2, shape);
    bx_step_reset(st);
    bx_tensor *y = bx_relu(st, x);
    CHECK(bx_is_poison(y));
    CHECK(bx_step_status(st) == BX_ERR_STATE);
    CHECK(strstr(bx_step_errmsg(st), "after bx_step_reset") != NULL);
    /* poison propagates without a new error */
    bx_tensor *z = bx_relu(st, y);
    CHECK(bx_is_poison(z));
    bx_step_free(st);
}

static void test_rng(void) {
    bx_rng a, b;
    bx_rng_init(&a, 42);
    bx_rng_init(&b, 42);
    for (int i = 0; i < 10; i++) CHECK(bx_rng_u32(&a) == bx_rng_u32(&b));
    bx_rng c = a; /* state is two integers: copying resumes the stream */
    CHECK(bx_rng_u32(&a) == bx_rng_u32(&c));
    double s = 0;
    for (int i = 0; i < 10000; i++) {
        float u = bx_rng_uniform(&a);
        CHECK(u >= 0.0f && u < 1.0f);
        s += u;
    }
    CHECK_NEAR(s / 10000, 0.5, 0.02);
}

int main(void) {
    test_errors();
    test_alloc_hook();
    test_arena();
    test_step_steady_state();
    test_rng();
    return tu_finish("core");
}
