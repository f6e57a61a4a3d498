/* arena.h - bump allocator for per-step memory.
 * Blocks are kept across resets; when a step needed several blocks, reset
 * replaces them by one block big enough for the peak, so after the first step
 * a steady-state step allocates nothing. */
#ifndef BLIXT_ARENA_H
#define BLIXT_ARENA_H

#include <stddef.h>
#include <stdint.h>

typedef struct bx__arena_block bx__arena_block;

typedef struct bx__arena {
    bx__arena_block *first;   /* chain of blocks */
    bx__arena_block *cur;     /* block being bumped */
    size_t used_total;        /* bytes handed out since reset (incl. padding) */
    size_t peak;              /* largest used_total seen */
    size_t capacity;          /* sum of block capacities */
    uint64_t generation;      /* incremented at every reset */
} bx__arena;

void bx__arena_init(bx__arena *a);
void bx__arena_destroy(bx__arena *a);
/* 64-byte aligned memory; NULL (with NOMEM text) on failure. */
void *bx__arena_alloc(bx__arena *a, size_t bytes);
void bx__arena_reset(bx__arena *a);

#endif
