#pragma once

// Paths and names a client sends (upload entries, dataset names), as graft
// checks and shows them. DatasetStore::CheckRelativePath and CheckName are
// defined in client_paths.cc beside these.

#include <string>

namespace graft::core {

// RFC 3629 UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF.
bool IsValidUtf8(const std::string& s);

// A client's path as answers and logs may show it: control characters and
// bytes that are not UTF-8 become \xNN.
std::string PrintablePath(const std::string& s);

}  // namespace graft::core
