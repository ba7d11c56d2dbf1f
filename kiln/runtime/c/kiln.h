/* kiln.h: run a compiled kiln model (.kiln artifact) from C, without Python.
 *
 *   char err[256];
 *   kiln_model* m = kiln_load("model.kiln", err, sizeof err);
 *   if (!m) { fprintf(stderr, "%s\n", err); return 1; }
 *   // inputs/outputs: one buffer each, in the model's order, sized kiln_io_bytes()
 *   if (kiln_run(m, inputs, outputs) != 0) ...
 *   kiln_free(m);
 *
 * The C path runs the model at the static shapes fixed when it was compiled (symbolic dims are
 * bound to the values given to `kiln compile --c-shape`, 1 by default); models with host ops
 * (ops without a native lowering) cannot run from C. Build: cc app.c kiln_runtime.c -ldl
 */
#ifndef KILN_H
#define KILN_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_model kiln_model;

/* Load a .kiln artifact; NULL on failure with a message in err. */
kiln_model* kiln_load(const char* path, char* err, size_t errlen);
void kiln_free(kiln_model* m);

/* The model's inputs (is_output = 0) and outputs (is_output = 1). */
int kiln_io_count(const kiln_model* m, int is_output);
const char* kiln_io_name(const kiln_model* m, int is_output, int i);
const char* kiln_io_dtype(const kiln_model* m, int is_output, int i);   /* "f32", "i64", ... */
int kiln_io_rank(const kiln_model* m, int is_output, int i);
const int64_t* kiln_io_shape(const kiln_model* m, int is_output, int i);
int64_t kiln_io_bytes(const kiln_model* m, int is_output, int i);

/* One inference: inputs[i] and outputs[i] point to C-contiguous buffers of kiln_io_bytes().
 * Returns 0 on success. Not thread-safe per model (one arena per model). */
int kiln_run(kiln_model* m, const void* const* inputs, void* const* outputs);

#ifdef __cplusplus
}
#endif
#endif
