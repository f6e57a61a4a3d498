/* topk.c - which indices torch.topk selects on CPU, ties included.
 *
 * ATen's CPU topk (aten/src/ATen/native/cpu/SortingKernel.cpp, PyTorch 1.13)
 * fills a vector of (value, index) pairs in index order and, comparing values
 * only (NaN counts as the largest), runs
 *   k*64 <= n: std::partial_sort(begin, begin+k, end)  -> __heap_select
 *   otherwise: std::nth_element(begin, begin+k-1, end) -> __introselect
 * and returns the first k pairs. Among equal values the chosen indices follow
 * these libstdc++ algorithms (GCC 12), not index order, so pruning masks only
 * match PyTorch's bit for bit when the algorithms are copied step for step.
 * This is a line-by-line port of tests/golden/topk_ties.py (itself a port of
 * libstdc++'s stl_algo.h / stl_heap.h), which matched torch.topk on 4000
 * random tie-heavy trials. The order of the k results is irrelevant (torch's
 * sort of the result does not change the set). */
#include "prune/prune_int.h"

typedef struct pair {
    float v;
    int64_t i;
} pair;

/* comp(x, y): "x goes before y". largest: x > y, NaN first; smallest: x < y,
 * NaN last (ATen's topk comparators). */
static inline bool comp(pair x, pair y, bool largest) {
    if (largest) return (isnan(x.v) && !isnan(y.v)) || x.v > y.v;
    return (!isnan(x.v) && isnan(y.v)) || x.v < y.v;
}

static void adjust_heap(pair *a, int64_t first, int64_t hole, int64_t len, pair value, bool lg) {
    const int64_t top = hole;
    int64_t second = hole;
    while (second < (len - 1) / 2) {
        second = 2 * (second + 1);
        if (comp(a[first + second], a[first + second - 1], lg)) second--;
        a[first + hole] = a[first + second];
        hole = second;
    }
    if ((len & 1) == 0 && second == (len - 2) / 2) {
        second = 2 * (second + 1);
        a[first + hole] = a[first + second - 1];
        hole = second - 1;
    }
    /* __push_heap */
    int64_t parent = (hole - 1) / 2;
    while (hole > top && comp(a[first + parent], value, lg)) {
        a[first + hole] = a[first + parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    a[first + hole] = value;
}

static void make_heap(pair *a, int64_t first, int64_t last, bool lg) {
    int64_t len = last - first;
    if (len < 2) return;
    for (int64_t parent = (len - 2) / 2;; parent--) {
        adjust_heap(a, first, parent, len, a[first + parent], lg);
        if (parent == 0) return;
    }
}

static void heap_select(pair *a, int64_t first, int64_t middle, int64_t last, bool lg) {
    make_heap(a, first, middle, lg);
    for (int64_t i = middle; i < last; i++) {
        if (comp(a[i], a[first], lg)) {
            pair value = a[i];
            a[i] = a[first];
            adjust_heap(a, first, 0, middle - first, value, lg);
        }
    }
}

static inline void swap_pairs(pair *a, int64_t x, int64_t y) {
    pair t = a[x];
    a[x] = a[y];
    a[y] = t;
}

static void move_median_to_first(pair *a, int64_t result, int64_t x, int64_t y, int64_t z, bool lg) {
    if (comp(a[x], a[y], lg)) {
        if (comp(a[y], a[z], lg))
            swap_pairs(a, result, y);
        else if (comp(a[x], a[z], lg))
            swap_pairs(a, result, z);
        else
            swap_pairs(a, result, x);
    } else if (comp(a[x], a[z], lg)) {
        swap_pairs(a, result, x);
    } else if (comp(a[y], a[z], lg)) {
        swap_pairs(a, result, z);
    } else {
        swap_pairs(a, result, y);
    }
}

static int64_t unguarded_partition(pair *a, int64_t first, int64_t last, int64_t pivot, bool lg) {
    for (;;) {
        while (comp(a[first], a[pivot], lg)) first++;
        last--;
        while (comp(a[pivot], a[last], lg)) last--;
        if (!(first < last)) return first;
        swap_pairs(a, first, last);
        first++;
    }
}

static void insertion_sort(pair *a, int64_t first, int64_t last, bool lg) {
    if (first == last) return;
    for (int64_t i = first + 1; i < last; i++) {
        pair val = a[i];
        if (comp(val, a[first], lg)) {
            memmove(a + first + 1, a + first, sizeof *a * (size_t)(i - first)); /* move_backward */
            a[first] = val;
        } else { /* __unguarded_linear_insert */
            int64_t j = i;
            while (comp(val, a[j - 1], lg)) {
                a[j] = a[j - 1];
                j--;
            }
            a[j] = val;
        }
    }
}

/* floor(log2(n)) for n >= 1 (std::__lg). */
static int64_t lg2(int64_t n) {
    int64_t r = -1;
    while (n) {
        n >>= 1;
        r++;
    }
    return r;
}

/* std::nth_element(a, a + nth, a + n) as libstdc++'s __introselect. */
static void nth_element(pair *a, int64_t n, int64_t nth, bool lg) {
    int64_t first = 0, last = n;
    if (first == last || nth == last) return;
    int64_t depth = lg2(last - first) * 2;
    while (last - first > 3) {
        if (depth == 0) {
            heap_select(a, first, nth + 1, last, lg);
            swap_pairs(a, first, nth); /* place the nth element in its final position */
            return;
        }
        depth--;
        int64_t mid = first + (last - first) / 2;
        move_median_to_first(a, first, first + 1, mid, last - 1, lg);
        int64_t cut = unguarded_partition(a, first + 1, last, first, lg);
        if (cut <= nth)
            first = cut;
        else
            last = cut;
    }
    insertion_sort(a, first, last, lg);
}

bx_status bx_prune_topk(const float *values, int64_t n, int64_t k, bool largest, int64_t *idx) {
    if (n < 0 || k < 0 || k > n || (n > 0 && !values) || (k > 0 && !idx))
        return bx__error(BX_ERR_INVALID, "topk: bad arguments (n %lld, k %lld)", (long long)n, (long long)k);
    if (k == 0) return BX_OK;
    pair *q = bx__malloc(sizeof *q * (size_t)n);
    if (!q) return BX_ERR_NOMEM;
    for (int64_t j = 0; j < n; j++) q[j] = (pair){values[j], j};
    if (k * 64 <= n)
        heap_select(q, 0, k, n, largest); /* partial_sort = heap_select + sort_heap (order irrelevant) */
    else
        nth_element(q, n, k - 1, largest);
    for (int64_t j = 0; j < k; j++) idx[j] = q[j].i;
    bx__free(q);
    return BX_OK;
}
