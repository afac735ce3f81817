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

/* The actor's own section (messages handled; refuses to save an actor cut off mid-call). It
 * lives in the SHOAL_EXT_SNAPSHOT slot and is always restorable. */
extern const shoal_ext_ops_t shoal_actor_ext_ops;
/* Messages an actor has handled to completion, since it started (carried by snapshots). */
uint64_t shoal_actor_messages(shoal_instance_t *inst);

#endif
