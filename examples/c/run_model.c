/* Run a compiled kiln model from C, without Python.
 *
 *   kiln compile model.onnx -o model.kiln
 *   cc -O2 -I kiln/runtime/c examples/c/run_model.c kiln/runtime/c/kiln_runtime.c -ldl -o run_model
 *   ./run_model model.kiln [input0.bin ...] [--out PREFIX]
 *
 * Each input is read from a raw little-endian file of exactly kiln_io_bytes() bytes (zeros when
 * no file is given); each output is printed (first values and a checksum) and, with --out, written
 * to PREFIX<i>.bin.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"

static int read_file(const char* path, void* buf, int64_t n) {
  FILE* f = fopen(path, "rb");
  if (!f) return -1;
  size_t got = fread(buf, 1, (size_t)n, f);
  fclose(f);
  return got == (size_t)n ? 0 : -1;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL.kiln [input.bin ...] [--out PREFIX]\n", argv[0]);
    return 2;
  }
  char err[512];
  kiln_model* m = kiln_load(argv[1], err, sizeof err);
  if (!m) {
    fprintf(stderr, "kiln: %s\n", err);
    return 1;
  }
  const char* prefix = NULL;
  int n_files = 0;
  const char* files[64];
  for (int a = 2; a < argc; ++a) {
    if (strcmp(argv[a], "--out") == 0 && a + 1 < argc) prefix = argv[++a];
    else if (n_files < 64) files[n_files++] = argv[a];
  }
  int n_in = kiln_io_count(m, 0), n_out = kiln_io_count(m, 1);
  void** in = calloc((size_t)n_in, sizeof(void*));
  void** out = calloc((size_t)n_out, sizeof(void*));
  for (int i = 0; i < n_in; ++i) {
    int64_t n = kiln_io_bytes(m, 0, i);
    in[i] = calloc(1, (size_t)n);
    if (i < n_files && read_file(files[i], in[i], n) != 0) {
      fprintf(stderr, "cannot read %lld bytes for input %s from %s\n", (long long)n, kiln_io_name(m, 0, i), files[i]);
      return 1;
    }
  }
  for (int i = 0; i < n_out; ++i) out[i] = calloc(1, (size_t)kiln_io_bytes(m, 1, i));
  if (kiln_run(m, (const void* const*)in, out) != 0) {
    fprintf(stderr, "kiln: run failed\n");
    return 1;
  }
  for (int i = 0; i < n_out; ++i) {
    int64_t n = kiln_io_bytes(m, 1, i);
    printf("output %d %s %s [", i, kiln_io_name(m, 1, i), kiln_io_dtype(m, 1, i));
    for (int k = 0; k < kiln_io_rank(m, 1, i); ++k) printf(k ? ",%lld" : "%lld", (long long)kiln_io_shape(m, 1, i)[k]);
    printf("]");
    if (strcmp(kiln_io_dtype(m, 1, i), "f32") == 0) {
      const float* y = out[i];
      double sum = 0;
      for (int64_t k = 0; k < n / 4; ++k) sum += y[k];
      printf(" first %g sum %.6g", n >= 4 ? y[0] : 0.0, sum);
    }
    printf("\n");
    if (prefix) {
      char path[1024];
      snprintf(path, sizeof path, "%s%d.bin", prefix, i);
      FILE* f = fopen(path, "wb");
      if (!f || fwrite(out[i], 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "cannot write %s\n", path); return 1; }
      fclose(f);
    }
  }
  for (int i = 0; i < n_in; ++i) free(in[i]);
  for (int i = 0; i < n_out; ++i) free(out[i]);
  free(in);
  free(out);
  kiln_free(m);
  return 0;
}
