/* cpu_backend.h — what CPU-side layers may reach inside the CPU backend. */
#ifndef SHOAL_BACKEND_CPU_BACKEND_H
#define SHOAL_BACKEND_CPU_BACKEND_H

#include "backend/backend.h"
#include "backend/cpu/threadpool.h"

/* The CPU backend's thread pool, shared with CPU layers (the LLM forward pass) so the
 * process runs one set of worker threads; NULL when `be` is not the CPU backend. */
shoal_threadpool_t *shoal_cpu_backend_pool(shoal_backend_t *be);

#endif
