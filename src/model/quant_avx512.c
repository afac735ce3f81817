/* quant_avx512.c — AVX-512 VNNI kernels (placeholder table: falls back to AVX2 until tuned). */
#if defined(__x86_64__) && defined(__GNUC__)
#include "model/quant.h"
#include "model/quant_impl.h"

const qkern *shoal_qkern_avx512(uint32_t type)
{
    (void)type;
    return NULL;
}

void shoal_act_q8_avx512(const float *x, void *act, int64_t n) { shoal_act_q8_avx2(x, act, n); }
#endif
