#include "core/util/torch_status.h"

namespace graft::core {

std::string FirstLine(const std::string& message) {
  const auto end = message.find('\n');
  return end == std::string::npos ? message : message.substr(0, end);
}

}  // namespace graft::core
