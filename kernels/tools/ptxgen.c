/* ptxgen: compiles one kernels/<name>.cu file to PTX for compute_80 and compute_90, validates it by compiling CUBINs for
 * sm_80 and sm_90 (ptxas-level checks: registers, shared memory, spills), and writes a resource report. Built and run
 * by cmake/ptx.cmake; any failure exits non-zero, which fails the build.
 *
 *   ptxgen (--nvrtc LIB | --nvcc NVCC [--nvcc-flags "FLAGS"]) -I INCLUDE_DIR -o OUT_DIR FILE.cu
 *
 * writes OUT_DIR/<stem>.compute_80.ptx, OUT_DIR/<stem>.compute_90.ptx and OUT_DIR/<stem>.resources.txt with one line
 * per kernel and arch: "<stem> <kernel> <sm_XX> <registers> <static smem bytes> <stack bytes> <spill stores> <spill loads>".
 *
 * Both compilers get the same options (src/VwLmm.Cuda/PtxCompiler.cs mirrors them for `vwlmm ptx`):
 *   -std=c++17 -lineinfo -I INCLUDE_DIR, no fast math (IEEE division/sqrt, no flush-to-zero: the GPU then agrees with
 *   the emulator to within the tests' tolerances; kernels call __expf & co. explicitly where speed matters), no
 *   -default-device (nvcc has no such switch, so helpers must say __device__ and both paths accept the same source).
 * NVRTC is loaded with dlopen and declared here by hand, so building ptxgen needs no CUDA headers. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct _nvrtcProgram* nvrtcProgram;
static int (*nvrtcCreateProgram)(nvrtcProgram*, const char*, const char*, int, const char* const*, const char* const*);
static int (*nvrtcCompileProgram)(nvrtcProgram, int, const char* const*);
static int (*nvrtcGetProgramLogSize)(nvrtcProgram, size_t*);
static int (*nvrtcGetProgramLog)(nvrtcProgram, char*);
static int (*nvrtcGetPTXSize)(nvrtcProgram, size_t*);
static int (*nvrtcGetPTX)(nvrtcProgram, char*);
static int (*nvrtcDestroyProgram)(nvrtcProgram*);
static const char* (*nvrtcGetErrorString)(int);

enum { PATH_LEN = 4096 };
static const char* nvcc;            /* set: compile with nvcc; unset: NVRTC */
static const char* nvcc_flags = ""; /* extra nvcc flags, e.g. "-ccbin clang-14" */
static const char* include_dir;
static const char* out_dir;
static const char* source_path;
static char* source;                /* NVRTC only: the file's text */
static char stem[256];

static void die(const char* fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ptxgen: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* Reads a stream to its end into a NUL-terminated malloc'ed buffer. */
static char* read_all(FILE* f)
{
    size_t cap = 1 << 16, n = 0, r;
    char* buf = malloc(cap + 1);
    while ((r = fread(buf + n, 1, cap - n, f)) > 0)
        if ((n += r) == cap) buf = realloc(buf, (cap *= 2) + 1);
    buf[n] = 0;
    return buf;
}

/* Written to a temp file and renamed, so an interrupted build never leaves a truncated output behind. */
static void write_file(const char* path, const char* data, size_t len)
{
    char tmp[PATH_LEN + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE* f = fopen(tmp, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) die("cannot write %s", tmp);
    if (rename(tmp, path) != 0) die("cannot rename %s to %s", tmp, path);
}

static void load_nvrtc(const char* lib)
{
    void* h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) die("NVRTC not found (%s): run ./build.sh deps", lib);
#define SYM(f) if (!(*(void**)&f = dlsym(h, #f))) die("%s lacks %s", lib, #f)
    SYM(nvrtcCreateProgram); SYM(nvrtcCompileProgram); SYM(nvrtcGetProgramLogSize); SYM(nvrtcGetProgramLog);
    SYM(nvrtcGetPTXSize); SYM(nvrtcGetPTX); SYM(nvrtcDestroyProgram); SYM(nvrtcGetErrorString);
#undef SYM
}

/* One NVRTC compile; returns 0 on success. *log and (for PTX) *ptx are malloc'ed. */
static int nvrtc_compile(const char* arch, int verbose, char** log, char** ptx)
{
    char arch_opt[64], inc_opt[PATH_LEN + 16];
    snprintf(arch_opt, sizeof arch_opt, "--gpu-architecture=%s", arch);
    snprintf(inc_opt, sizeof inc_opt, "--include-path=%s", include_dir);
    const char* opts[] = { arch_opt, "--std=c++17", "-lineinfo", inc_opt, "-Xptxas", "-v" };
    nvrtcProgram prog;
    int rc = nvrtcCreateProgram(&prog, source, source_path, 0, NULL, NULL);
    if (rc) die("nvrtcCreateProgram(%s): %s", source_path, nvrtcGetErrorString(rc));
    rc = nvrtcCompileProgram(prog, verbose ? 6 : 4, opts);
    size_t n;
    nvrtcGetProgramLogSize(prog, &n);
    *log = malloc(n + 1);
    nvrtcGetProgramLog(prog, *log);
    if (rc == 0 && ptx) {
        nvrtcGetPTXSize(prog, &n);
        *ptx = malloc(n + 1);
        nvrtcGetPTX(prog, *ptx);
    }
    nvrtcDestroyProgram(&prog);
    return rc;
}

/* One nvcc run with stdout and stderr captured as the log; returns nvcc's exit status. */
static int nvcc_compile(const char* mode, const char* arch, const char* out, char** log)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s -arch=%s -std=c++17 -lineinfo -I '%s' %s %s -o '%s' '%s' 2>&1",
             nvcc, mode, arch, include_dir, strcmp(mode, "-cubin") == 0 ? "-Xptxas -v" : "", nvcc_flags, out, source_path);
    FILE* p = popen(cmd, "r");
    if (!p) die("cannot run %s", nvcc);
    *log = read_all(p);
    return pclose(p);
}

static void emit_ptx(const char* arch)
{
    char path[PATH_LEN], *log, *ptx = NULL;
    snprintf(path, sizeof path, "%s/%s.%s.ptx", out_dir, stem, arch);
    if (nvcc) {
        char tmp[PATH_LEN + 8];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        if (nvcc_compile("-ptx", arch, tmp, &log) != 0) die("%s for %s failed:\n%s", source_path, arch, log);
        if (rename(tmp, path) != 0) die("cannot rename %s to %s", tmp, path);
    } else {
        if (nvrtc_compile(arch, 0, &log, &ptx) != 0) die("%s for %s failed:\n%s", source_path, arch, log);
        write_file(path, ptx, strlen(ptx));
        free(ptx);
    }
    if (log[0]) fprintf(stderr, "ptxgen: %s for %s:\n%s", source_path, arch, log); /* warnings */
    free(log);
}

/* The figure written just before `at` in "…, 1024 bytes smem, …"; 0 when `at` is absent. */
static long figure_before(const char* line, const char* at)
{
    const char* p = strstr(line, at);
    if (!p) return 0;
    while (p > line && p[-1] >= '0' && p[-1] <= '9') p--;
    return atol(p);
}

/* Parses ptxas -v output ("Compiling entry function 'k' for 'sm_90'", "N bytes stack frame, N bytes spill stores,
 * N bytes spill loads", "Used N registers, N bytes smem, …") into report lines. */
static void append_resources(const char* log, const char* arch, char** report, size_t* len, size_t* cap)
{
    char kernel[512] = "";
    long stack = 0, spill_st = 0, spill_ld = 0;
    for (const char* line = log; *line; ) {
        const char* end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char buf[1024];
        snprintf(buf, sizeof buf, "%.*s", (int)(n < sizeof buf ? n : sizeof buf - 1), line);
        const char* s;
        long regs;
        if ((s = strstr(buf, "Compiling entry function '"))) {
            sscanf(s + strlen("Compiling entry function '"), "%511[^']", kernel);
            stack = spill_st = spill_ld = 0;
        } else if (kernel[0] && strstr(buf, " bytes stack frame")) {
            stack = figure_before(buf, " bytes stack frame");
            spill_st = figure_before(buf, " bytes spill stores");
            spill_ld = figure_before(buf, " bytes spill loads");
        } else if (kernel[0] && (s = strstr(buf, "Used ")) && sscanf(s, "Used %ld registers", &regs) == 1) {
            char row[1024];
            int m = snprintf(row, sizeof row, "%s %s %s %ld %ld %ld %ld %ld\n", stem, kernel, arch, regs,
                             figure_before(s, " bytes smem"), stack, spill_st, spill_ld);
            while (*len + (size_t)m + 1 > *cap) *report = realloc(*report, *cap *= 2);
            memcpy(*report + *len, row, (size_t)m + 1);
            *len += (size_t)m;
            kernel[0] = 0;
        }
        line += n + (end != NULL);
    }
}

/* CUBIN compile = ptxas validation. NVRTC 11.8 drops ptxas's error text from the log when -v is on, so a failure is
 * compiled once more without -v to report the actual error. */
static void validate(const char* arch, char** report, size_t* len, size_t* cap)
{
    char* log;
    int failed;
    if (nvcc) {
        char tmp[PATH_LEN + 8];
        snprintf(tmp, sizeof tmp, "%s/%s.%s.cubin.tmp", out_dir, stem, arch);
        failed = nvcc_compile("-cubin", arch, tmp, &log) != 0;
        unlink(tmp);
    } else if ((failed = nvrtc_compile(arch, 1, &log, NULL) != 0)) {
        free(log);
        nvrtc_compile(arch, 0, &log, NULL);
    }
    if (failed) die("%s does not compile for %s:\n%s", source_path, arch, log);
    append_resources(log, arch, report, len, cap);
    free(log);
}

int main(int argc, char** argv)
{
    const char* nvrtc = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--nvrtc") == 0) nvrtc = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--nvcc") == 0) nvcc = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--nvcc-flags") == 0) nvcc_flags = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "-I") == 0) include_dir = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "-o") == 0) out_dir = argv[++i];
        else if (argv[i][0] != '-' && !source_path) source_path = argv[i];
        else die("unexpected argument '%s'", argv[i]);
    }
    if (!(nvrtc || nvcc) || !include_dir || !out_dir || !source_path)
        die("usage: ptxgen (--nvrtc LIB | --nvcc NVCC [--nvcc-flags FLAGS]) -I INCLUDE_DIR -o OUT_DIR FILE.cu");
    const char* base = strrchr(source_path, '/');
    snprintf(stem, sizeof stem, "%s", base ? base + 1 : source_path);
    char* dot = strrchr(stem, '.');
    if (dot) *dot = 0;
    if (!nvcc) {
        load_nvrtc(nvrtc);
        FILE* f = fopen(source_path, "rb");
        if (!f) die("cannot read %s", source_path);
        source = read_all(f);
        fclose(f);
    }

    /* Validation first: a file that fails writes no PTX. */
    size_t len = 0, cap = 4096;
    char* report = malloc(cap);
    report[0] = 0;
    validate("sm_80", &report, &len, &cap);
    validate("sm_90", &report, &len, &cap);
    emit_ptx("compute_80");
    emit_ptx("compute_90");
    char path[PATH_LEN];
    snprintf(path, sizeof path, "%s/%s.resources.txt", out_dir, stem);
    write_file(path, report, len);
    return 0;
}
