/* chat.h — renders a conversation ({role, content} messages) into a prompt string in the format a
 * model was trained on. No Jinja: the format is recognised from markers in the model's
 * `tokenizer.chat_template` (or forced) and produced by hand.
 *
 *   ChatML (SmolLM2, Qwen, ...):   <|im_start|>ROLE\nCONTENT<|im_end|>\n ...
 *                                  generation prompt: <|im_start|>assistant\n
 *       Templates that add a system message when the conversation has none (SmolLM2's does:
 *       "You are a helpful AI assistant named SmolLM, trained by Hugging Face") have that text
 *       extracted into default_system and rendered the same way.
 *   Llama 3:  <|begin_of_text|><|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|> ...
 *             generation prompt: <|start_header_id|>assistant<|end_header_id|>\n\n
 *       CONTENT is trimmed of leading/trailing whitespace, as the official template does. The
 *       prompt carries BOS as text (before the first message): encode it with parse_special and
 *       without add_bos.
 *
 * The output holds special tokens as text, so encode it with parse_special = true. */
#ifndef SHOAL_MODEL_CHAT_H
#define SHOAL_MODEL_CHAT_H

#include "shoal.h"
#include "model/gguf.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum shoal_chat_format {
    SHOAL_CHAT_UNKNOWN = 0,
    SHOAL_CHAT_CHATML = 1,
    SHOAL_CHAT_LLAMA3 = 2,
} shoal_chat_format_t;

#define SHOAL_CHAT_MAX_SYSTEM 1024

typedef struct shoal_chat_template {
    shoal_chat_format_t format;
    /* System message to insert when the first message is not "system" (empty: none). */
    char default_system[SHOAL_CHAT_MAX_SYSTEM];
    size_t default_system_len;
} shoal_chat_template_t;

/* One message. Strings need not be NUL-terminated (they may point into guest memory). */
typedef struct shoal_chat_msg {
    const char *role;
    size_t role_len;
    const char *content;
    size_t content_len;
} shoal_chat_msg_t;

/* A plain template of a forced format (no default system message). SHOAL_E_INVALID for
 * SHOAL_CHAT_UNKNOWN or an out-of-range value. */
shoal_status_t shoal_chat_template_init(shoal_chat_template_t *t, shoal_chat_format_t format);
/* Recognises a Jinja template text by its markers: "<|im_start|>" -> ChatML,
 * "<|start_header_id|>" -> Llama 3. SHOAL_E_UNSUPPORTED if neither is present. */
shoal_status_t shoal_chat_template_parse(const char *jinja, size_t len, shoal_chat_template_t *t);
/* From the model's `tokenizer.chat_template`: SHOAL_E_NOT_FOUND if the key is absent,
 * SHOAL_E_UNSUPPORTED if it is not a format above. */
shoal_status_t shoal_chat_template_from_gguf(const shoal_gguf_t *g, shoal_chat_template_t *t);
const char *shoal_chat_format_name(shoal_chat_format_t f); /* "chatml", "llama3", "unknown" */

/* Renders msgs[0..n) and, with add_generation_prompt, the opening of the assistant's turn,
 * into out[0..cap) (not NUL-terminated). *n_out receives the length; if cap is too small the
 * result is SHOAL_E_LIMIT with *n_out = the length needed. A role must be non-empty and must not
 * contain the format's markers or a newline (SHOAL_E_INVALID); content is copied as is. */
shoal_status_t shoal_chat_render(const shoal_chat_template_t *t, const shoal_chat_msg_t *msgs, size_t n,
                                 bool add_generation_prompt, char *out, size_t cap, size_t *n_out);

#endif
