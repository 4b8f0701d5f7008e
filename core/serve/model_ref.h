#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "core/util/names.h"

namespace graft::core {

// How a request names a model:
//   model-1a2b3c4d5e6f     its id
//   NAME                   the version NAME's alias "default" points to, else its newest
//   NAME:VERSION           that version (1, 2, ...)
//   NAME@ALIAS             the version ALIAS points to ("latest": the newest)
// Each may be prefixed OWNER/ to name another principal's model (names belong
// to the principal whose job made the model).
struct ModelRef {
  std::string id;     // set for an id; the rest empty
  std::string owner;  // empty: the caller's, or the only owner of NAME
  std::string name;
  int64_t version = 0;  // 0: not given
  std::string alias;    // empty: not given
};

absl::StatusOr<ModelRef> ParseModelRef(const std::string& text);

inline constexpr char kLatestAlias[] = "latest";    // always the newest version; not settable
inline constexpr char kDefaultAlias[] = "default";  // what a bare NAME means when set

}  // namespace graft::core
