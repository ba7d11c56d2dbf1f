/* kiln_runtime.c: load a .kiln artifact (an uncompressed zip) and run it. See kiln.h. */
#define _GNU_SOURCE
#include "kiln.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*static_run_fn)(const void* const*, void* const*, void*, const char*);
typedef int64_t (*arena_fn)(void);
typedef int (*count_fn)(int);
typedef const char* (*name_fn)(int, int);
typedef int (*rank_fn)(int, int);
typedef const int64_t* (*shape_fn)(int, int);
typedef int64_t (*bytes_fn)(int, int);

struct kiln_model {
  char* file;                 /* the whole artifact, read into memory */
  size_t file_size;
  void* lib;
  const char* weights;        /* start of the safetensors data section */
  void* arena;
  static_run_fn run;
  count_fn io_count;
  name_fn io_name, io_dtype;
  rank_fn io_rank;
  shape_fn io_shape;
  bytes_fn io_bytes;
};

static void fail(char* err, size_t n, const char* msg, const char* detail) {
  if (err && n) snprintf(err, n, "%s%s%s", msg, detail ? ": " : "", detail ? detail : "");
}

static uint32_t u32(const unsigned char* p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t u16(const unsigned char* p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Find a stored (uncompressed) member of the zip; NULL if absent. */
static const char* member(const char* file, size_t size, const char* name, size_t* len) {
  size_t pos = 0, want = strlen(name);
  while (pos + 30 <= size) {
    const unsigned char* h = (const unsigned char*)file + pos;
    if (u32(h) != 0x04034b50) break;
    uint16_t method = u16(h + 8), nlen = u16(h + 26), xlen = u16(h + 28);
    uint32_t csize = u32(h + 18);
    size_t data = pos + 30 + nlen + xlen;
    if (data + csize > size) return NULL;
    if (nlen == want && memcmp(h + 30, name, want) == 0) {
      if (method != 0) return NULL;
      *len = csize;
      return file + data;
    }
    pos = data + csize;
  }
  return NULL;
}

kiln_model* kiln_load(const char* path, char* err, size_t errlen) {
  kiln_model* m = calloc(1, sizeof *m);
  FILE* f = fopen(path, "rb");
  if (!m || !f) { fail(err, errlen, "cannot open", path); if (f) fclose(f); free(m); return NULL; }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  m->file = malloc(size > 0 ? (size_t)size : 1);
  m->file_size = size > 0 ? (size_t)size : 0;
  if (!m->file || fread(m->file, 1, m->file_size, f) != m->file_size) {
    fclose(f); fail(err, errlen, "cannot read", path); kiln_free(m); return NULL;
  }
  fclose(f);
  size_t lib_len = 0, w_len = 0;
  const char* lib = member(m->file, m->file_size, "libkiln_model.so", &lib_len);
  const char* w = member(m->file, m->file_size, "weights.safetensors", &w_len);
  if (!lib || !w || w_len < 8) { fail(err, errlen, "not a kiln artifact with a compiled library", path); kiln_free(m); return NULL; }
  uint64_t hlen = 0;
  memcpy(&hlen, w, 8);
  if (8 + hlen > w_len) { fail(err, errlen, "damaged weights in", path); kiln_free(m); return NULL; }
  m->weights = w + 8 + hlen;
  char tmp[] = "/tmp/kiln_model_XXXXXX";
  int fd = mkstemp(tmp);
  if (fd < 0 || write(fd, lib, lib_len) != (ssize_t)lib_len) {
    if (fd >= 0) { close(fd); unlink(tmp); }
    fail(err, errlen, "cannot write the library to /tmp", NULL); kiln_free(m); return NULL;
  }
  close(fd);
  /* RTLD_NODELETE: the kernels' OpenMP runtime keeps worker threads parked in its code after a
     run; unmapping it at kiln_free would pull the code from under them */
  m->lib = dlopen(tmp, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  unlink(tmp);
  if (!m->lib) { fail(err, errlen, "cannot load the compiled library", dlerror()); kiln_free(m); return NULL; }
  m->run = (static_run_fn)dlsym(m->lib, "kiln_static_run");
  arena_fn arena_bytes = (arena_fn)dlsym(m->lib, "kiln_static_arena_bytes");
  m->io_count = (count_fn)dlsym(m->lib, "kiln_static_io_count");
  m->io_name = (name_fn)dlsym(m->lib, "kiln_static_io_name");
  m->io_dtype = (name_fn)dlsym(m->lib, "kiln_static_io_dtype");
  m->io_rank = (rank_fn)dlsym(m->lib, "kiln_static_io_rank");
  m->io_shape = (shape_fn)dlsym(m->lib, "kiln_static_io_shape");
  m->io_bytes = (bytes_fn)dlsym(m->lib, "kiln_static_io_bytes");
  if (!m->run || !arena_bytes || !m->io_count || !m->io_name || !m->io_dtype || !m->io_rank ||
      !m->io_shape || !m->io_bytes) {
    fail(err, errlen, "the library has no C entry points (recompile with this kiln)", NULL); kiln_free(m); return NULL;
  }
  int64_t ab = arena_bytes();
  if (ab < 0) { fail(err, errlen, "this model cannot run from C (host ops or data-dependent shapes)", path); kiln_free(m); return NULL; }
  m->arena = aligned_alloc(64, (size_t)((ab + 63) / 64 * 64 + 64));
  if (!m->arena) { fail(err, errlen, "out of memory for the arena", NULL); kiln_free(m); return NULL; }
  return m;
}

void kiln_free(kiln_model* m) {
  if (!m) return;
  if (m->lib) dlclose(m->lib);
  free(m->arena);
  free(m->file);
  free(m);
}

int kiln_io_count(const kiln_model* m, int o) { return m->io_count(o); }
const char* kiln_io_name(const kiln_model* m, int o, int i) { return m->io_name(o, i); }
const char* kiln_io_dtype(const kiln_model* m, int o, int i) { return m->io_dtype(o, i); }
int kiln_io_rank(const kiln_model* m, int o, int i) { return m->io_rank(o, i); }
const int64_t* kiln_io_shape(const kiln_model* m, int o, int i) { return m->io_shape(o, i); }
int64_t kiln_io_bytes(const kiln_model* m, int o, int i) { return m->io_bytes(o, i); }

int kiln_run(kiln_model* m, const void* const* inputs, void* const* outputs) {
  return m->run(inputs, outputs, m->arena, m->weights);
}
