/* snapshot.h — internal side of snapshots: how higher layers make their per-instance state
 * (ext slots) travel with a snapshot. */
#ifndef SHOAL_SNAPSHOT_SNAPSHOT_H
#define SHOAL_SNAPSHOT_SNAPSHOT_H

#include "runtime/runtime_impl.h"

/* Registers the ops that rebuild ext slot `slot` from a snapshot section named ops->name.
 * Layers call it once when they define their host module (idempotent; the ops must be static),
 * so a fresh process can restore their state. Saving an instance also registers the ops of the
 * slots it saves, if the slot has none yet. A snapshot whose section names a layer this process
 * has not registered is refused on restore, by name. */
shoal_status_t shoal_snapshot_register_ext(int slot, const shoal_ext_ops_t *ops);

#endif
