/* test_runner_selftest.c - runs blixt-golden on tiny case files written here:
 * an unknown kind, a corrupt file, missing metadata, bad args, and the
 * built-in `runner_selftest` kind (in.x copied through gc_param must equal
 * out.y) to check the comparison rule, shape mismatches, exact integer
 * comparison, the summary line and the exit status. */
#include "test_util.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];
static char golden_exe[1024];

static void write_case(const char *name, const char *kind, const char *tol, const char *atol, const char *args,
                       const float *x, int nx, const float *y, int ny, int yrows) {
    bx_st_writer *w = bx_st_writer_new();
    int64_t sx[1] = {nx}, sy[2] = {yrows, yrows ? ny / yrows : ny};
    bx_tensor *tx = bx_tensor_new(BX_F32, 1, sx);
    bx_tensor *ty = yrows ? bx_tensor_new(BX_F32, 2, sy) : bx_tensor_new(BX_F32, 1, (int64_t[]){ny});
    memcpy(tx->data, x, sizeof(float) * (size_t)nx);
    memcpy(ty->data, y, sizeof(float) * (size_t)ny);
    bx_st_writer_add(w, "in.x", tx);
    bx_st_writer_add(w, "out.y", ty);
    if (kind) bx_st_writer_meta(w, "kind", kind);
    if (tol) bx_st_writer_meta(w, "tol", tol);
    if (atol) bx_st_writer_meta(w, "atol", atol);
    if (args) bx_st_writer_meta(w, "args", args);
    char path[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", tmpdir, name);
    CHECK_OK(bx_st_writer_write(w, path));
    bx_st_writer_free(w);
    bx_tensor_free(tx);
    bx_tensor_free(ty);
}

static void write_int_case(const char *name, int64_t last) {
    int64_t s3[1] = {3};
    bx_tensor *x = bx_tensor_new(BX_F32, 1, s3), *i = bx_tensor_new(BX_I64, 1, s3), *o = bx_tensor_new(BX_I64, 1, s3);
    for (int k = 0; k < 3; k++) {
        ((float *)x->data)[k] = (float)k;
        ((int64_t *)i->data)[k] = k;
        ((int64_t *)o->data)[k] = k == 2 ? last : k;
    }
    bx_st_writer *w = bx_st_writer_new();
    bx_st_writer_add(w, "in.x", x);
    bx_st_writer_add(w, "out.y", x);
    bx_st_writer_add(w, "in.i", i);
    bx_st_writer_add(w, "out.i", o);
    bx_st_writer_meta(w, "kind", "runner_selftest");
    bx_st_writer_meta(w, "tol", "1");
    bx_st_writer_meta(w, "atol", "1");
    char path[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", tmpdir, name);
    CHECK_OK(bx_st_writer_write(w, path));
    bx_st_writer_free(w);
    bx_tensor_free(x);
    bx_tensor_free(i);
    bx_tensor_free(o);
}

/* Runs blixt-golden with `args`; output into out, returns the exit status. */
static int run_golden(const char *args, char *out, size_t n) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", golden_exe, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t len = fread(out, 1, n - 1, p);
    out[len] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect_line(const char *out, const char *line) {
    tu_checks++;
    if (!strstr(out, line)) {
        tu_failures++;
        fprintf(stderr, "expected a line containing \"%s\" in:\n%s\n", line, out);
    }
}

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

int main(void) {
    /* the runner lives in <build>/bin, this test in <build>/tests */
    const char *env = getenv("BLIXT_GOLDEN");
    if (env) {
        snprintf(golden_exe, sizeof golden_exe, "%s", env);
    } else {
        char self[900];
        ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
        if (k <= 0) return 1;
        self[k] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) *slash = '\0';
        snprintf(golden_exe, sizeof golden_exe, "%s/../bin/blixt-golden", self);
    }
    if (access(golden_exe, X_OK) != 0) {
        printf("blixt-golden not built (%s): skipped\n", golden_exe);
        return 0;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bx_golden_selftest_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;

    const float x[3] = {1.0f, -2.0f, 3.0f};
    const float near[3] = {1.0f, -2.0f, 3.00002f}; /* 2e-5 <= 1e-6 + 1e-5*3 */
    const float far[3] = {1.0f, -2.1f, 3.0f};
    write_case("a_unknown", "foo", "0", "0", NULL, x, 3, x, 3, 0);
    write_case("b_pass", "runner_selftest", "1e-5", "1e-6", "{\"value\": 2.0, \"ref\": 2.0}", x, 3, near, 3, 0);
    write_case("c_tol", "runner_selftest", "1e-5", "1e-6", NULL, x, 3, far, 3, 0);
    write_case("d_shape", "runner_selftest", "1e-5", "1e-6", NULL, x, 3, x, 3, 3);
    write_case("e_exact", "runner_selftest", "0", "0", NULL, x, 3, near, 3, 0);
    write_case("f_nokind", NULL, "0", "0", NULL, x, 3, x, 3, 0);
    write_case("g_badargs", "runner_selftest", "0", "0", "[1,", x, 3, x, 3, 0);
    write_case("h_value", "runner_selftest", "1e-5", "0", "{\"value\": 2.5, \"ref\": 2.0}", x, 3, x, 3, 0);
    write_case("i_need", "runner_selftest", "0", "0", "{\"missing\": \"grad.w\"}", x, 3, x, 3, 0);
    write_int_case("j_int", 3);
    write_int_case("k_intok", 2);
    char p[600];
    snprintf(p, sizeof p, "%s/l_corrupt.safetensors", tmpdir);
    FILE *fp = fopen(p, "wb");
    fputs("garbage, not a safetensors file", fp);
    fclose(fp);
    snprintf(p, sizeof p, "%s/index.json", tmpdir);
    fp = fopen(p, "wb");
    fputs("[]", fp);
    fclose(fp);

    static char out[16384];
    char args[600];
    snprintf(args, sizeof args, "'%s'", tmpdir);
    int rc = run_golden(args, out, sizeof out);
    CHECK_EQ_INT(rc, 1);
    expect_line(out, "FAIL a_unknown: unknown kind 'foo' (worst err 0)\n");
    expect_line(out, "PASS b_pass (worst err ");
    expect_line(out, "FAIL c_tol: out.y: 1 of 3 elements out of tolerance, first at [1]");
    expect_line(out, "FAIL d_shape: out.y: shape (3) but reference (3,1)");
    expect_line(out, "FAIL e_exact: out.y: 1 of 3 elements differ (exact), first at [2]");
    expect_line(out, "FAIL f_nokind: no 'kind' in the metadata");
    expect_line(out, "FAIL g_badargs: metadata 'args' is not a JSON object");
    expect_line(out, "FAIL h_value: value: got 2.5 want 2");
    expect_line(out, "FAIL i_need: missing tensor 'grad.w'");
    expect_line(out, "FAIL j_int: out.i: 1 of 3 elements differ (exact)");
    expect_line(out, "PASS k_intok (worst err 0)");
    expect_line(out, "FAIL l_corrupt: cannot load: safetensors");
    expect_line(out, "2 passed, 10 failed\n");
    CHECK(strstr(out, "index") == NULL);
    /* one line per case + the summary; cases in name order */
    int lines = 0;
    for (const char *c = out; *c; c++) lines += *c == '\n';
    CHECK_EQ_INT(lines, 13);
    CHECK(strstr(out, "a_unknown") < strstr(out, "b_pass") && strstr(out, "b_pass") < strstr(out, "l_corrupt"));
    /* worst err: normalised, 2e-5 / (1e-6 + 1e-5*3) ~ 0.645 */
    const char *b = strstr(out, "PASS b_pass (worst err ");
    if (b) {
        double we = atof(b + strlen("PASS b_pass (worst err "));
        CHECK(we > 0.4 && we < 1.0);
    }

    snprintf(args, sizeof args, "'%s/b_pass.safetensors' '%s/k_intok.safetensors'", tmpdir, tmpdir);
    CHECK_EQ_INT(run_golden(args, out, sizeof out), 0);
    expect_line(out, "2 passed, 0 failed\n");
    /* --strict: out.i of k_intok is compared, so it still passes; b_pass too */
    snprintf(args, sizeof args, "--strict '%s/k_intok.safetensors'", tmpdir);
    CHECK_EQ_INT(run_golden(args, out, sizeof out), 0);
    snprintf(args, sizeof args, "'%s/nonexistent.safetensors'", tmpdir);
    CHECK_EQ_INT(run_golden(args, out, sizeof out), 1);
    expect_line(out, "FAIL nonexistent: cannot load");
    CHECK_EQ_INT(run_golden("", out, sizeof out), 2);
    CHECK_EQ_INT(run_golden("--bogus x", out, sizeof out), 2);

    rm_tree(tmpdir);
    return tu_finish("test_runner_selftest");
}
