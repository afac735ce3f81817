/* nn_exec.h — one wasi-nn execution context of a GGML graph: the prompt's token ids, a private
 * llama context (KV cache) over the shared model, the sampler and the generated tokens.
 *
 * Zero-copy contract: the prompt is tokenised straight from the guest's bytes (set_prompt is
 * handed a pointer into linear memory and keeps nothing of it but token ids), and the output
 * text is never staged on the host: it is rebuilt piece by piece from the generated ids
 * directly into the destination the caller passes (the guest's buffer).
 *
 * Every function returns a wasi-nn error code (wasi_nn_abi.h) and leaves the reason in
 * shoal_last_error() on failure. */
#ifndef SHOAL_NN_EXEC_H
#define SHOAL_NN_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "nn/nn_blob.h"
#include "nn/nn_config.h"
#include "nn/nn_model.h"

typedef struct nn_exec nn_exec_t;

int nn_exec_new(shoal_runtime_t *rt, const shoal_nn_model_t *m, const nn_config_t *cfg, nn_exec_t **out);
void nn_exec_delete(nn_exec_t *e);
/* The context's options (set_input index 1 updates them; they apply from the next compute). */
nn_config_t *nn_exec_config(nn_exec_t *e);
const shoal_nn_model_t *nn_exec_model(const nn_exec_t *e);

/* Input 0: tokenises text[0..len) as is (special tokens written in it are parsed: guests send
 * already-templated prompts), BOS added if the model wants one. Ends a stream in progress. */
int nn_exec_set_prompt(nn_exec_t *e, const char *text, size_t len);
/* Whole generation: n-predict tokens, or until end of generation / the reverse prompt.
 * prompt_too_long if the prompt does not fit the context (4 positions kept in reserve, as
 * WasmEdge does); context_full if generation runs out of positions (the text so far stays
 * readable). */
int nn_exec_compute(nn_exec_t *e);
/* One token per call; the first call of a stream evaluates the prompt. end_of_sequence when the
 * model ends its turn (the stream is over; the next call starts a new one), context_full when
 * out of positions. */
int nn_exec_compute_single(nn_exec_t *e);
/* Ends the stream (no-op without one). */
int nn_exec_fini_single(nn_exec_t *e);

/* Output 0, the generated text: *len gets its size. invalid_argument before any compute. */
int nn_exec_output_size(nn_exec_t *e, size_t *len);
/* Writes the text (exactly nn_exec_output_size bytes) to dst. */
void nn_exec_output_write(nn_exec_t *e, uint8_t *dst);
/* The text of the last token compute_single produced (0 bytes after end_of_sequence). */
int nn_exec_last_piece_size(nn_exec_t *e, size_t *len);
void nn_exec_last_piece_write(nn_exec_t *e, uint8_t *dst);
/* Output 1: JSON metadata ({"input_tokens":..,"output_tokens":..,...}) into buf[0..cap);
 * returns its length (may exceed cap: then nothing useful was written). */
size_t nn_exec_metadata(nn_exec_t *e, char *buf, size_t cap);

/* Snapshot record of the whole context: options, prompt and output ids, stream position, the
 * KV cache rows in use and the sampler's state. A restored context continues exactly where the
 * saved one was (the next compute_single gives the same token). */
void nn_exec_save(nn_exec_t *e, nn_writer *w);
shoal_status_t nn_exec_load(shoal_runtime_t *rt, const shoal_nn_model_t *m, nn_reader *r, nn_exec_t **out);

#endif
