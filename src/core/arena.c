/* arena.c - per-step bump allocator. */
#include "core/arena.h"
#include "core/core_int.h"

struct bx__arena_block {
    bx__arena_block *next;
    size_t cap, used;
    char *mem; /* 64-byte aligned */
};

#define MIN_BLOCK ((size_t)1 << 20)

void bx__arena_init(bx__arena *a) {
    a->first = a->cur = NULL;
    a->used_total = a->peak = a->capacity = 0;
    a->generation = 1;
}

static void free_blocks(bx__arena_block *b) {
    while (b) {
        bx__arena_block *n = b->next;
        bx__free(b);
        b = n;
    }
}

void bx__arena_destroy(bx__arena *a) {
    free_blocks(a->first);
    a->first = a->cur = NULL;
    a->capacity = 0;
}

static bx__arena_block *new_block(size_t cap) {
    bx__arena_block *b = bx__malloc(sizeof *b + 64 + cap);
    if (!b) return NULL;
    uintptr_t p = (uintptr_t)(b + 1);
    b->mem = (char *)((p + 63) & ~(uintptr_t)63);
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

void *bx__arena_alloc(bx__arena *a, size_t bytes) {
    size_t need = (bytes + 63) & ~(size_t)63;
    if (need == 0) need = 64;
    for (;;) {
        bx__arena_block *b = a->cur;
        if (b && b->cap - b->used >= need) {
            void *p = b->mem + b->used;
            b->used += need;
            a->used_total += need;
            if (a->used_total > a->peak) a->peak = a->used_total;
            return p;
        }
        if (b && b->next) { /* a later block left from before */
            a->cur = b->next;
            a->cur->used = 0;
            continue;
        }
        size_t cap = need > MIN_BLOCK ? need : MIN_BLOCK;
        if (a->capacity > cap) cap = a->capacity; /* grow geometrically */
        bx__arena_block *nb = new_block(cap);
        if (!nb) return NULL;
        a->capacity += cap;
        if (b) b->next = nb;
        else a->first = nb;
        a->cur = nb;
    }
}

void bx__arena_reset(bx__arena *a) {
    a->generation++;
    if (a->first && a->first->next && a->peak > a->first->cap) {
        /* The step spilled into several blocks: keep one that holds the peak. */
        size_t cap = a->peak + a->peak / 8;
        bx__arena_block *nb = new_block(cap);
        if (nb) {
            free_blocks(a->first);
            a->first = nb;
            a->capacity = cap;
        }
    }
    a->cur = a->first;
    if (a->cur) a->cur->used = 0;
    a->used_total = 0;
}
