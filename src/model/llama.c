/* llama.c — per-actor Llama context: KV cache, scratch (the RunState of llama2.c) and the
 * batched forward pass on the CPU thread pool.
 *
 * Design: a batch of nb tokens goes through each layer together. Every weight matrix is split
 * into row chunks, one pool task each; a task multiplies its rows with all nb quantised
 * activations (four rows stay in L1 while the batch passes over them), so weights stream from
 * memory once per batch rather than once per token. Decode is the same code with nb = 1, where
 * the kernels walk one row at a time so the weights stream strictly in order. Per layer there are
 * five parallel-fors (QKV, attention, O + residual, gate/up + SwiGLU, down + residual); the small
 * serial steps between them (RMSNorm, activation quantisation, RoPE) touch a few KB. Nothing is
 * allocated per token.
 *
 * Kernels: Q4_0/Q4_1/Q8_0 weights go through the fused AVX-512 VNNI kernels of
 * backend/cpu/qdot.h when the CPU has them (both activation planes in one pass); otherwise, and
 * for float weights, through quant.h's dot products (the second plane then costs a second pass
 * over the same row slice, still in cache). */
#include "model/llama.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/ops_llm.h"
#include "backend/cpu/qdot.h"
#include "core/error.h"
#include "model/quant.h"

struct shoal_llama_ctx {
    const shoal_llama_model_t *m;
    shoal_threadpool_t *pool; /* borrowed */
    int n_threads;
    int n_ctx, n_batch, n_past;
    float *kv;        /* (n_layer, 2, n_ctx, kv_dim): K then V of each layer */
    bool kv_owned;    /* false: the caller's (kv_external) */
    float *x;         /* (n_batch, dim) residual stream */
    float *xb;        /* (n_batch, xb_dim) normed input, then attention output; xb_dim = max(dim, q_dim) */
    int xb_dim;
    float *q;         /* (n_batch, q_dim) */
    float *hb;        /* (n_batch, ffn_dim) gate, then silu(gate) * up */
    float *hb2;       /* (n_batch, ffn_dim) up */
    float *tmp;       /* (n_batch, dim) matmul result before the residual add */
    uint8_t *act;     /* (n_batch, act_stride) activations quantised for integer dots */
    uint8_t *act2;    /* (n_batch, act_stride) second plane: the quantised residual x - plane 1 */
    float *resid;     /* (n_batch, max_in) x - plane 1, input of the second plane */
    size_t act_stride;
    int act_planes;   /* 1 or 2 */
    float *y2;        /* (n_threads, Y2_ROWS * n_batch) per-thread output of the second plane */
    bool use_qdot;    /* fused AVX-512 VNNI kernels (backend/cpu/qdot.h) for Q4_0/Q4_1/Q8_0 weights */
    uint8_t *qact;    /* (n_batch, qact_stride) activations in qdot's format (both planes in one) */
    size_t qact_stride;
    float *scores;    /* (n_threads, n_ctx) attention weights, one row per pool thread */
    float *rope_cs;   /* (n_batch, rope_dim) cos, sin of pos * theta_i for the batch's positions */
    float *part_o;    /* (n_batch, ATTN_SPLITS, n_head, head_dim) attention over one position range, unnormalised */
    float *part_ml;   /* (n_batch, ATTN_SPLITS, n_head, 2) that range's max score and sum of exponentials */
};

/* ---------------------------------------------------------------- matmul jobs */

enum { EPI_STORE, EPI_ADD, EPI_SWIGLU };

typedef struct mm_part {
    const shoal_llama_mat_t *w;
    const uint8_t *act; /* (n_act, act_stride): act_q for integer types, x rows for float types */
    const uint8_t *act2; /* second activation plane (same stride), or NULL */
    bool qdot;           /* act is a qdot activation: run shoal_qdot_matmul */
    int planes;
    size_t act_stride;
    float *y;           /* (n_act, ldy) output rows */
    size_t ldy;
    int n_chunks;
} mm_part_t;

typedef struct mm_job {
    shoal_llama_ctx_t *c;
    mm_part_t parts[3];
    int n_parts;
    int n_act;
    int chunk_rows;
    int epilogue;
    float *res;     /* EPI_ADD: (n_act, dim) += y; EPI_SWIGLU: parts[0] = gate (in place), parts[1] = up */
    size_t ld_res;
} mm_job_t;

/* Rows per pass of the second plane: their weights are still in L1/L2 from plane 1. */
#define Y2_ROWS 64

static void mm_rows(const mm_part_t *p, int n_act, int r0, int r1, float *y2)
{
    const shoal_llama_mat_t *w = p->w;
    const char *wr = (const char *)w->data + (size_t)r0 * w->row_bytes;
    if (p->qdot) {
        shoal_qdot_matmul(w->type, wr, w->row_bytes, r1 - r0, p->act, p->act_stride, n_act, w->n_in, p->planes, p->y + r0,
                          p->ldy);
        return;
    }
    if (!p->act2) {
        if (n_act == 1)
            shoal_matvec(w->type, wr, w->row_bytes, r1 - r0, p->act, w->n_in, p->y + r0);
        else
            shoal_matmul(w->type, wr, w->row_bytes, r1 - r0, p->act, p->act_stride, n_act, w->n_in, p->y + r0, p->ldy);
        return;
    }
    /* W x = W (plane1 + plane2) exactly (the dots are linear in the activation), so the second
     * plane adds its product; done in slices so each slice's weights are reused from cache. */
    for (int s0 = r0; s0 < r1; s0 += Y2_ROWS) {
        int rows = r1 - s0 < Y2_ROWS ? r1 - s0 : Y2_ROWS;
        const char *ws = (const char *)w->data + (size_t)s0 * w->row_bytes;
        if (n_act == 1) {
            shoal_matvec(w->type, ws, w->row_bytes, rows, p->act, w->n_in, p->y + s0);
            shoal_matvec(w->type, ws, w->row_bytes, rows, p->act2, w->n_in, y2);
            shoal_op_add(p->y + s0, y2, rows);
        } else {
            shoal_matmul(w->type, ws, w->row_bytes, rows, p->act, p->act_stride, n_act, w->n_in, p->y + s0, p->ldy);
            shoal_matmul(w->type, ws, w->row_bytes, rows, p->act2, p->act_stride, n_act, w->n_in, y2, (size_t)rows);
            for (int t = 0; t < n_act; t++)
                shoal_op_add(p->y + (size_t)t * p->ldy + s0, y2 + (size_t)t * rows, rows);
        }
    }
}

static void mm_task(void *vjob, int task, int thread)
{
    mm_job_t *j = vjob;
    float *y2 = j->c->y2 ? j->c->y2 + (size_t)thread * Y2_ROWS * j->c->n_batch : NULL;
    int part = 0;
    while (task >= j->parts[part].n_chunks) {
        task -= j->parts[part].n_chunks;
        part++;
    }
    const mm_part_t *p = &j->parts[part];
    int r0 = task * j->chunk_rows, r1 = r0 + j->chunk_rows;
    if (r1 > p->w->n_out)
        r1 = p->w->n_out;
    mm_rows(p, j->n_act, r0, r1, y2);
    if (j->epilogue == EPI_SWIGLU) {
        /* SwiGLU jobs have one task list over gate rows; the same task does the up rows */
        mm_rows(&j->parts[1], j->n_act, r0, r1, y2);
        for (int t = 0; t < j->n_act; t++)
            shoal_op_swiglu(p->y + (size_t)t * p->ldy + r0, j->parts[1].y + (size_t)t * j->parts[1].ldy + r0, r1 - r0);
    } else if (j->epilogue == EPI_ADD) {
        for (int t = 0; t < j->n_act; t++)
            shoal_op_add(j->res + (size_t)t * j->ld_res + r0, p->y + (size_t)t * p->ldy + r0, r1 - r0);
    }
}

static void mm_run(shoal_llama_ctx_t *c, mm_job_t *j)
{
    /* Enough chunks to balance threads on a busy machine, few enough that each task amortises
     * its atomic claim; multiples of 4 rows because the dot kernels work on 4 rows at a time. */
    int max_rows = 0;
    for (int i = 0; i < j->n_parts; i++)
        max_rows = j->parts[i].w->n_out > max_rows ? j->parts[i].w->n_out : max_rows;
    int target = c->n_threads == 1 ? 1 : c->n_threads * 4;
    int cr = (max_rows + target - 1) / target;
    cr = (cr + 3) & ~3;
    if (cr < 16)
        cr = 16;
    j->chunk_rows = cr;
    j->c = c;
    int n_tasks = 0;
    int parts = j->epilogue == EPI_SWIGLU ? 1 : j->n_parts;
    for (int i = 0; i < j->n_parts; i++) {
        j->parts[i].n_chunks = (j->parts[i].w->n_out + cr - 1) / cr;
        if (i < parts)
            n_tasks += j->parts[i].n_chunks;
    }
    shoal_threadpool_parallel_for(c->pool, mm_task, j, n_tasks);
}

/* Prepares activations for matrix w from x rows (n_act, ld floats): quantised into c->act for
 * integer-dot types, x itself for float types. */
static void set_act(shoal_llama_ctx_t *c, mm_part_t *p, const shoal_llama_mat_t *w, const float *x, size_t ld,
                    int n_act, bool *quantised)
{
    const shoal_qtype_traits_t *tr = shoal_qtype_traits(w->type);
    const int n = w->n_in;
    p->w = w;
    p->act2 = NULL;
    p->qdot = false;
    p->planes = c->act_planes;
    if (c->use_qdot && shoal_qdot_type_supported(w->type)) {
        if (!quantised[1]) {
            for (int t = 0; t < n_act; t++)
                shoal_qact_quantize(x + (size_t)t * ld, n, c->act_planes, c->qact + (size_t)t * c->qact_stride);
            quantised[1] = true;
        }
        p->qdot = true;
        p->act = c->qact;
        p->act_stride = c->qact_stride;
        return;
    }
    if (tr->int_dot) {
        if (!quantised[0]) {
            for (int t = 0; t < n_act; t++) {
                uint8_t *a = c->act + (size_t)t * c->act_stride;
                const float *xt = x + (size_t)t * ld;
                shoal_act_quantize(w->type, xt, a, n);
                if (c->act_planes == 2) {
                    /* residual of plane 1, |r| <= d/2 per element, quantised again: together the
                     * planes carry about 15 bits per element. Plane 1's values are recomputed
                     * with quant.h's documented arithmetic (d = amax/127, q = rint(x * 127/amax)),
                     * which reproduces its bytes without reading its private layout. */
                    float *r = c->resid + (size_t)t * c->act_stride;
                    for (int b0 = 0; b0 < n; b0 += 32) {
                        float amax = 0.0f;
                        for (int i = b0; i < b0 + 32; i++)
                            amax = fmaxf(amax, fabsf(xt[i]));
                        float id = amax != 0.0f ? 127.0f / amax : 0.0f, d = amax / 127.0f;
                        for (int i = b0; i < b0 + 32; i++)
                            r[i] = xt[i] - d * nearbyintf(xt[i] * id);
                    }
                    shoal_act_quantize(w->type, r, c->act2 + (size_t)t * c->act_stride, n);
                }
            }
            quantised[0] = true;
        }
        p->act = c->act;
        p->act2 = c->act_planes == 2 ? c->act2 : NULL;
        p->act_stride = c->act_stride;
    } else {
        p->act = (const uint8_t *)x;
        p->act_stride = ld * sizeof(float);
    }
}

/* ---------------------------------------------------------------- attention job */

/* Attention is split over position ranges as well as heads ("flash decoding"): in decode there are
 * only n_head_kv groups, fewer than a few threads can share, and at long contexts reading K and V
 * dominates, so each task takes one (token, KV group, range), reads that K/V slice once for all
 * the group's query heads, and a merge step combines the ranges' partial softmaxes. */
#define ATTN_SPLITS 16
#define ATTN_MIN_RANGE 64

typedef struct attn_job {
    shoal_llama_ctx_t *c;
    const float *k, *v; /* this layer's cache, (n_ctx, kv_dim) */
    int pos0;
    int splits, range;  /* position ranges per token and their length */
} attn_job_t;

static void attn_task(void *vjob, int task, int thread)
{
    attn_job_t *j = vjob;
    shoal_llama_ctx_t *c = j->c;
    const shoal_llama_hparams_t *hp = &c->m->hp;
    const int S = j->splits, hd = hp->head_dim, n_rep = hp->n_head / hp->n_head_kv;
    int s = task % S, g = (task / S) % hp->n_head_kv, t = task / S / hp->n_head_kv;
    int n_kv = j->pos0 + t + 1, p0 = s * j->range, p1 = p0 + j->range < n_kv ? p0 + j->range : n_kv;
    size_t slot = ((size_t)t * ATTN_SPLITS + s) * hp->n_head + (size_t)g * n_rep;
    shoal_op_attention_partial(c->q + (size_t)t * hp->q_dim + (size_t)g * n_rep * hd,
                               j->k + (size_t)p0 * hp->kv_dim + (size_t)g * hd,
                               j->v + (size_t)p0 * hp->kv_dim + (size_t)g * hd, (size_t)hp->kv_dim,
                               p1 > p0 ? p1 - p0 : 0, n_rep, hd, 1.0f / sqrtf((float)hd),
                               c->scores + (size_t)thread * c->n_ctx, c->part_o + slot * hd, c->part_ml + slot * 2);
}

/* out (head_dim,) of token t, head h = merge of the S ranges. */
static void attn_merge(const shoal_llama_ctx_t *c, int t, int h, int S)
{
    const shoal_llama_hparams_t *hp = &c->m->hp;
    const int hd = hp->head_dim;
    float m = -INFINITY, l = 0.0f, w[ATTN_SPLITS];
    for (int s = 0; s < S; s++) {
        float ms = c->part_ml[(((size_t)t * ATTN_SPLITS + s) * hp->n_head + h) * 2];
        m = ms > m ? ms : m;
    }
    for (int s = 0; s < S; s++) {
        const float *ml = c->part_ml + (((size_t)t * ATTN_SPLITS + s) * hp->n_head + h) * 2;
        w[s] = ml[1] > 0.0f ? expf(ml[0] - m) : 0.0f;
        l += w[s] * ml[1];
    }
    float *out = c->xb + (size_t)t * c->xb_dim + (size_t)h * hd;
    for (int i = 0; i < hd; i++)
        out[i] = 0.0f;
    for (int s = 0; s < S; s++) {
        if (w[s] == 0.0f)
            continue;
        const float *o = c->part_o + (((size_t)t * ATTN_SPLITS + s) * hp->n_head + h) * hd;
        for (int i = 0; i < hd; i++)
            out[i] += w[s] * o[i];
    }
    float inv = 1.0f / l;
    for (int i = 0; i < hd; i++)
        out[i] *= inv;
}

static void merge_task(void *vjob, int task, int thread)
{
    attn_job_t *j = vjob;
    (void)thread;
    for (int h = 0; h < j->c->m->hp.n_head; h++)
        attn_merge(j->c, task, h, j->splits);
}

static void attention(shoal_llama_ctx_t *c, const float *kc, const float *vc, int nb, int pos0)
{
    const shoal_llama_hparams_t *hp = &c->m->hp;
    int n_kv_max = pos0 + nb;
    int splits = (n_kv_max + ATTN_MIN_RANGE - 1) / ATTN_MIN_RANGE;
    splits = splits < 1 ? 1 : splits > ATTN_SPLITS ? ATTN_SPLITS : splits;
    attn_job_t aj = {c, kc, vc, pos0, splits, (n_kv_max + splits - 1) / splits};
    shoal_threadpool_parallel_for(c->pool, attn_task, &aj, nb * hp->n_head_kv * splits);
    if (nb == 1) /* decode: a few KB of merging is cheaper than another barrier */
        merge_task(&aj, 0, 0);
    else
        shoal_threadpool_parallel_for(c->pool, merge_task, &aj, nb);
}

/* ---------------------------------------------------------------- forward */

static void forward(shoal_llama_ctx_t *c, const int32_t *tokens, int nb, int pos0, float *logits, int mode)
{
    const shoal_llama_model_t *m = c->m;
    const shoal_llama_hparams_t *hp = &m->hp;
    const int dim = hp->dim, ffn = hp->ffn_dim;

    for (int t = 0; t < nb; t++) {
        const shoal_llama_mat_t *e = &m->tok_embd;
        shoal_dequantize_row(e->type, (const char *)e->data + (size_t)tokens[t] * e->row_bytes, c->x + (size_t)t * dim,
                             dim);
        float *cs = c->rope_cs + (size_t)t * hp->rope_dim;
        for (int i = 0; i < hp->rope_dim / 2; i++) {
            /* angle in double: pos * theta is large for late positions and float loses its phase */
            double a = (double)(pos0 + t) * (double)m->rope_inv_freq[i];
            cs[2 * i] = (float)cos(a);
            cs[2 * i + 1] = (float)sin(a);
        }
    }

    for (int l = 0; l < hp->n_layer; l++) {
        const shoal_llama_layer_t *L = &m->layers[l];
        float *kc = c->kv + (size_t)2 * l * c->n_ctx * hp->kv_dim;
        float *vc = kc + (size_t)c->n_ctx * hp->kv_dim;
        bool quantised[2] = {false, false};
        mm_job_t j;

        /* attention block: xb = rmsnorm(x); q, k, v = xb Wq, xb Wk, xb Wv (k, v straight into the cache) */
        for (int t = 0; t < nb; t++)
            shoal_op_rmsnorm(c->xb + (size_t)t * c->xb_dim, c->x + (size_t)t * dim, L->attn_norm, dim, hp->rms_eps);
        memset(&j, 0, sizeof j);
        j.n_act = nb;
        j.n_parts = 3;
        set_act(c, &j.parts[0], &L->wq, c->xb, (size_t)c->xb_dim, nb, quantised);
        set_act(c, &j.parts[1], &L->wk, c->xb, (size_t)c->xb_dim, nb, quantised);
        set_act(c, &j.parts[2], &L->wv, c->xb, (size_t)c->xb_dim, nb, quantised);
        j.parts[0].y = c->q;
        j.parts[0].ldy = (size_t)hp->q_dim;
        j.parts[1].y = kc + (size_t)pos0 * hp->kv_dim;
        j.parts[1].ldy = (size_t)hp->kv_dim;
        j.parts[2].y = vc + (size_t)pos0 * hp->kv_dim;
        j.parts[2].ldy = (size_t)hp->kv_dim;
        j.epilogue = EPI_STORE;
        mm_run(c, &j);
        for (int t = 0; t < nb; t++) {
            const float *cs = c->rope_cs + (size_t)t * hp->rope_dim;
            shoal_op_rope(c->q + (size_t)t * hp->q_dim, hp->n_head, hp->head_dim, hp->rope_dim, cs);
            shoal_op_rope(kc + (size_t)(pos0 + t) * hp->kv_dim, hp->n_head_kv, hp->head_dim, hp->rope_dim, cs);
        }
        attention(c, kc, vc, nb, pos0);

        /* x += attn Wo */
        quantised[0] = quantised[1] = false;
        memset(&j, 0, sizeof j);
        j.n_act = nb;
        j.n_parts = 1;
        set_act(c, &j.parts[0], &L->wo, c->xb, (size_t)c->xb_dim, nb, quantised);
        j.parts[0].y = c->tmp;
        j.parts[0].ldy = (size_t)dim;
        j.epilogue = EPI_ADD;
        j.res = c->x;
        j.ld_res = (size_t)dim;
        mm_run(c, &j);

        /* FFN block: hb = silu(xb Wgate) * (xb Wup); x += hb Wdown */
        for (int t = 0; t < nb; t++)
            shoal_op_rmsnorm(c->xb + (size_t)t * c->xb_dim, c->x + (size_t)t * dim, L->ffn_norm, dim, hp->rms_eps);
        quantised[0] = quantised[1] = false;
        memset(&j, 0, sizeof j);
        j.n_act = nb;
        j.n_parts = 2;
        set_act(c, &j.parts[0], &L->w_gate, c->xb, (size_t)c->xb_dim, nb, quantised);
        set_act(c, &j.parts[1], &L->w_up, c->xb, (size_t)c->xb_dim, nb, quantised);
        j.parts[0].y = c->hb;
        j.parts[0].ldy = (size_t)ffn;
        j.parts[1].y = c->hb2;
        j.parts[1].ldy = (size_t)ffn;
        j.epilogue = EPI_SWIGLU;
        mm_run(c, &j);

        quantised[0] = quantised[1] = false;
        memset(&j, 0, sizeof j);
        j.n_act = nb;
        j.n_parts = 1;
        set_act(c, &j.parts[0], &L->w_down, c->hb, (size_t)ffn, nb, quantised);
        j.parts[0].y = c->tmp;
        j.parts[0].ldy = (size_t)dim;
        j.epilogue = EPI_ADD;
        j.res = c->x;
        j.ld_res = (size_t)dim;
        mm_run(c, &j);
    }

    if (mode == SHOAL_LLAMA_LOGITS_NONE)
        return;
    /* logits = rmsnorm(x) Wout, only for the rows asked for, written straight to the caller */
    int first = mode == SHOAL_LLAMA_LOGITS_LAST ? nb - 1 : 0, rows = nb - first;
    for (int t = 0; t < rows; t++)
        shoal_op_rmsnorm(c->xb + (size_t)t * c->xb_dim, c->x + (size_t)(first + t) * dim, m->output_norm, dim,
                         hp->rms_eps);
    bool quantised[2] = {false, false};
    mm_job_t j;
    memset(&j, 0, sizeof j);
    j.n_act = rows;
    j.n_parts = 1;
    set_act(c, &j.parts[0], &m->output, c->xb, (size_t)c->xb_dim, rows, quantised);
    j.parts[0].y = logits;
    j.parts[0].ldy = (size_t)hp->vocab;
    j.epilogue = EPI_STORE;
    mm_run(c, &j);
}

shoal_status_t shoal_llama_eval(shoal_llama_ctx_t *c, const int32_t *tokens, int n, int pos0, float *logits_out,
                                int logits_mode)
{
    if (!c || !tokens)
        return shoal_fail(SHOAL_E_INVALID, "llama_eval: NULL context or tokens");
    if (n < 1)
        return shoal_fail(SHOAL_E_INVALID, "llama_eval: n = %d tokens; need at least 1", n);
    if (logits_mode < SHOAL_LLAMA_LOGITS_NONE || logits_mode > SHOAL_LLAMA_LOGITS_ALL)
        return shoal_fail(SHOAL_E_INVALID, "llama_eval: unknown logits mode %d", logits_mode);
    if (logits_mode != SHOAL_LLAMA_LOGITS_NONE && !logits_out)
        return shoal_fail(SHOAL_E_INVALID, "llama_eval: logits requested but logits_out is NULL");
    if (pos0 < 0 || pos0 > c->n_past)
        return shoal_fail(SHOAL_E_INVALID, "llama_eval: pos0 = %d must be in [0, n_past = %d]", pos0, c->n_past);
    if ((int64_t)pos0 + n > c->n_ctx)
        return shoal_fail(SHOAL_E_LIMIT, "llama_eval: context full: %d + %d tokens exceed n_ctx = %d by %lld", pos0,
                          n, c->n_ctx, (long long)pos0 + n - c->n_ctx);
    const int vocab = c->m->hp.vocab;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= vocab)
            return shoal_fail(SHOAL_E_INVALID, "llama_eval: token %d at index %d is outside the vocabulary [0, %d)",
                              tokens[i], i, vocab);
    for (int s = 0; s < n; s += c->n_batch) {
        int nb = n - s < c->n_batch ? n - s : c->n_batch;
        bool last = s + nb == n;
        int mode = logits_mode;
        float *out = logits_out;
        if (mode == SHOAL_LLAMA_LOGITS_LAST && !last)
            mode = SHOAL_LLAMA_LOGITS_NONE;
        if (mode == SHOAL_LLAMA_LOGITS_ALL)
            out = logits_out + (size_t)s * vocab;
        forward(c, tokens + s, nb, pos0 + s, out, mode);
        c->n_past = pos0 + s + nb;
    }
    return SHOAL_OK;
}

/* ---------------------------------------------------------------- context lifetime */

void shoal_llama_ctx_params_init(shoal_llama_ctx_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->act_planes = 2;
}

size_t shoal_llama_kv_bytes(const shoal_llama_model_t *m, int n_ctx)
{
    return (size_t)m->hp.n_layer * 2 * (size_t)n_ctx * (size_t)m->hp.kv_dim * sizeof(float);
}

shoal_status_t shoal_llama_ctx_new(const shoal_llama_model_t *m, const shoal_llama_ctx_params_t *p,
                                   shoal_threadpool_t *pool, shoal_llama_ctx_t **out)
{
    if (!m || !out)
        return shoal_fail(SHOAL_E_INVALID, "llama_ctx: NULL model or out");
    const shoal_llama_hparams_t *hp = &m->hp;
    shoal_llama_ctx_params_t def;
    shoal_llama_ctx_params_init(&def);
    if (!p)
        p = &def;
    int n_ctx = p->n_ctx > 0 ? p->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    int n_batch = p->n_batch > 0 ? p->n_batch : 64;
    if (n_ctx > (1 << 24))
        return shoal_fail(SHOAL_E_INVALID, "llama_ctx: n_ctx %d is larger than the limit 2^24", n_ctx);
    if (p->act_planes != 0 && p->act_planes != 1 && p->act_planes != 2)
        return shoal_fail(SHOAL_E_INVALID, "llama_ctx: act_planes must be 1 or 2, not %d", p->act_planes);
    if (n_batch > 4096)
        return shoal_fail(SHOAL_E_INVALID, "llama_ctx: n_batch %d is larger than the limit 4096", n_batch);
    if (n_batch > n_ctx)
        n_batch = n_ctx;
    if (p->kv_external && (p->n_ctx <= 0 || ((uintptr_t)p->kv_external & 15)))
        return shoal_fail(SHOAL_E_INVALID, "llama_ctx: an external KV cache needs an explicit n_ctx and 16-byte alignment");
    shoal_llama_ctx_t *c = calloc(1, sizeof *c);
    if (!c)
        return shoal_fail(SHOAL_E_NOMEM, "llama_ctx: out of memory");
    c->m = m;
    c->pool = pool;
    c->n_threads = shoal_threadpool_size(pool);
    c->n_ctx = n_ctx;
    c->n_batch = n_batch;
    c->xb_dim = hp->dim > hp->q_dim ? hp->dim : hp->q_dim;
    size_t max_in = (size_t)(hp->ffn_dim > c->xb_dim ? hp->ffn_dim : c->xb_dim);
    /* quant.h's prepared activations: the largest of its integer-dot formats at the widest input */
    size_t act_max = 0;
    const uint32_t int_types[] = {SHOAL_GGML_Q4_0, SHOAL_GGML_Q4_1, SHOAL_GGML_Q8_0};
    for (int i = 0; i < 3; i++) {
        size_t a = shoal_act_size(int_types[i], (int64_t)max_in);
        act_max = a > act_max ? a : act_max;
    }
    c->act_stride = (act_max + 63) & ~(size_t)63;
    size_t nbz = (size_t)n_batch;
    /* calloc of a large cache maps fresh zero pages lazily: unused positions cost no memory */
    c->kv_owned = !p->kv_external;
    c->kv = p->kv_external ? p->kv_external : calloc((size_t)hp->n_layer * 2 * (size_t)n_ctx * hp->kv_dim, sizeof(float));
    c->x = malloc(nbz * hp->dim * sizeof(float));
    c->xb = malloc(nbz * c->xb_dim * sizeof(float));
    c->q = malloc(nbz * hp->q_dim * sizeof(float));
    c->hb = malloc(nbz * hp->ffn_dim * sizeof(float));
    c->hb2 = malloc(nbz * hp->ffn_dim * sizeof(float));
    c->tmp = malloc(nbz * hp->dim * sizeof(float));
    c->act_planes = p->act_planes == 1 ? 1 : 2;
    c->use_qdot = shoal_qdot_available() && !p->portable_kernels;
    c->qact_stride = (shoal_qact_size((int)max_in) + 63) & ~(size_t)63;
    c->qact = aligned_alloc(64, nbz * c->qact_stride);
    if (!c->qact) {
        shoal_llama_ctx_delete(c);
        return shoal_fail(SHOAL_E_NOMEM, "llama_ctx: out of memory");
    }
    c->act = aligned_alloc(64, nbz * c->act_stride);
    if (c->act_planes == 2) {
        c->act2 = aligned_alloc(64, nbz * c->act_stride);
        c->resid = malloc(nbz * c->act_stride * sizeof(float));
        c->y2 = malloc((size_t)c->n_threads * Y2_ROWS * nbz * sizeof(float));
        if (!c->act2 || !c->resid || !c->y2) {
            shoal_llama_ctx_delete(c);
            return shoal_fail(SHOAL_E_NOMEM, "llama_ctx: out of memory");
        }
    }
    c->scores = malloc((size_t)c->n_threads * n_ctx * sizeof(float));
    c->rope_cs = malloc(nbz * hp->rope_dim * sizeof(float));
    c->part_o = malloc(nbz * ATTN_SPLITS * hp->n_head * hp->head_dim * sizeof(float));
    c->part_ml = malloc(nbz * ATTN_SPLITS * hp->n_head * 2 * sizeof(float));
    if (!c->kv || !c->x || !c->xb || !c->q || !c->hb || !c->hb2 || !c->tmp || !c->act || !c->scores || !c->rope_cs ||
        !c->part_o || !c->part_ml) {
        shoal_llama_ctx_delete(c);
        return shoal_fail(SHOAL_E_NOMEM, "llama_ctx: out of memory for a %d-position context", n_ctx);
    }
    *out = c;
    return SHOAL_OK;
}

void shoal_llama_ctx_delete(shoal_llama_ctx_t *c)
{
    if (!c)
        return;
    free(c->rope_cs);
    free(c->part_o);
    free(c->part_ml);
    free(c->scores);
    free(c->act);
    free(c->act2);
    free(c->qact);
    free(c->resid);
    free(c->y2);
    free(c->tmp);
    free(c->hb2);
    free(c->hb);
    free(c->q);
    free(c->xb);
    free(c->x);
    if (c->kv_owned)
        free(c->kv);
    free(c);
}

void shoal_llama_reset(shoal_llama_ctx_t *c)
{
    if (c)
        c->n_past = 0;
}

int shoal_llama_n_past(const shoal_llama_ctx_t *c) { return c ? c->n_past : 0; }
int shoal_llama_n_ctx(const shoal_llama_ctx_t *c) { return c ? c->n_ctx : 0; }
const shoal_llama_model_t *shoal_llama_ctx_model(const shoal_llama_ctx_t *c) { return c ? c->m : NULL; }

shoal_status_t shoal_llama_kv_layer(shoal_llama_ctx_t *c, int layer, float **k, float **v, size_t *row_bytes)
{
    if (!c || !k || !v || !row_bytes)
        return shoal_fail(SHOAL_E_INVALID, "llama_kv_layer: NULL argument");
    const shoal_llama_hparams_t *hp = &c->m->hp;
    if (layer < 0 || layer >= hp->n_layer)
        return shoal_fail(SHOAL_E_INVALID, "llama_kv_layer: layer %d outside [0, %d)", layer, hp->n_layer);
    *k = c->kv + (size_t)2 * layer * c->n_ctx * hp->kv_dim;
    *v = *k + (size_t)c->n_ctx * hp->kv_dim;
    *row_bytes = (size_t)hp->kv_dim * sizeof(float);
    return SHOAL_OK;
}

shoal_status_t shoal_llama_set_n_past(shoal_llama_ctx_t *c, int n_past)
{
    if (!c)
        return shoal_fail(SHOAL_E_INVALID, "llama_set_n_past: NULL context");
    if (n_past < 0 || n_past > c->n_ctx)
        return shoal_fail(SHOAL_E_INVALID, "llama_set_n_past: %d outside [0, n_ctx = %d]", n_past, c->n_ctx);
    c->n_past = n_past;
    return SHOAL_OK;
}
