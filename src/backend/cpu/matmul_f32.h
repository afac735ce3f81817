/* matmul_f32.h — float32 GEMM on the CPU, C = A @ B, row-major, threaded and vectorised. */
#ifndef SHOAL_BACKEND_CPU_MATMUL_F32_H
#define SHOAL_BACKEND_CPU_MATMUL_F32_H

#include <stdint.h>

#include "backend/cpu/threadpool.h"

/* C[m,n] = A[m,k] @ B[k,n]. C must not overlap A or B. */
void shoal_cpu_matmul_f32(shoal_threadpool_t *pool, const float *a, const float *b, float *c, uint32_t m,
                          uint32_t n, uint32_t k);
/* Which instruction set the kernel dispatches to on this CPU ("avx512f", "avx2+fma", "generic"). */
const char *shoal_cpu_matmul_isa(void);

#endif
