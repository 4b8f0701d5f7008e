#pragma once

// The c10d (torch.distributed) part of core/util/torch_compat.h, apart so
// that only collective.cc pulls in c10d's and Gloo's headers.

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "core/util/torch_compat.h"

namespace graft::core::compat {

// TCPStore options for rank 0's server or a client. 2.4 made the libuv
// server the default; Debian's builds may lack libuv, and the classic
// server is what 1.13 has: use it on every version.
inline c10d::TCPStoreOptions StoreOptions(bool server, int port, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(port);
  o.isServer = server;
  o.waitWorkers = false;
  o.timeout = timeout;
#if GRAFT_TORCH_AT_LEAST(2, 3)
  o.useLibUV = false;
#endif
  return o;
}

}  // namespace graft::core::compat
