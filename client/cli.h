#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace graft::client {

// Runs the `graft` command line: argv as main receives it. Output goes to
// `out`, one-line errors to `err`; returns the process exit code.
int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace graft::client
