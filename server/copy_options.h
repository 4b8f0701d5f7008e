#pragma once

// The graftd options that core parts and server parts take, copied from
// ServerOptions into their options structs as server/options.inc's
// GRAFT_INTO rows say: an option is stated once, with where it goes.

#include <type_traits>

#include "core/data/dataset_store.h"
#include "core/jobs/job_runner.h"
#include "core/serve/prediction_records.h"
#include "core/serve/predictor.h"
#include "core/zoo/weights_fetcher.h"
#include "core/zoo/zoo.h"
#include "server/backbones_service.h"
#include "server/open_inference_http.h"
#include "server/server.h"

namespace graft::server {

// Sets every field of `out` that a GRAFT_INTO row names for its type;
// leaves the others (what the server computes: directories, hooks) alone.
template <typename Struct>
void CopyOptions(const ServerOptions& options, Struct& out) {
#define GRAFT_OPTION(type, name, default_value, help)
#define GRAFT_OPTION_IN_PROCESS(type, name, in_process_default, graftd_default, help)
#define GRAFT_INTO(name, Into, field) \
  if constexpr (std::is_same_v<Struct, Into>) out.field = options.name;
#include "server/options.inc"
#undef GRAFT_OPTION
#undef GRAFT_OPTION_IN_PROCESS
#undef GRAFT_INTO
}

// A copy of `out` with the options set (for structs built in one statement).
template <typename Struct>
Struct WithOptions(const ServerOptions& options, Struct out = Struct{}) {
  CopyOptions(options, out);
  return out;
}

}  // namespace graft::server
