#pragma once

// What a principal may reach of what others made: the one policy the gRPC
// and REST services and the job runner ask.

#include <string>

#include "core/auth/token_store.h"

namespace graft::core {

// May see, change and delete what `owner` made: admins everything, others
// their own.
inline bool Owns(const Principal& p, const std::string& owner) { return p.admin() || p.name == owner; }

// Lists and resolves every principal's datasets, jobs and model names as its
// own (admins).
inline bool SeesEveryOwner(const Principal& p) { return p.admin(); }

// May predict with any principal's models by id or OWNER/NAME: inference
// tokens (applications serving models that training principals publish)
// and admins. Training principals use their own.
inline bool UsesAnyOwnersModels(const Principal& p) { return p.admin() || p.role == Role::kInference; }

}  // namespace graft::core
