#pragma once

namespace graft::core {

// Makes LibTorch ops called on this thread run on this thread alone.
//
// LibTorch's OpenMP backend gives every calling thread its own team of
// intra-op workers, and idle workers spin before they sleep. RPC handler and
// decode-pool threads only run small ops (preprocessing, softmax, heads); if
// each had a team, their spinning workers would steal the cores from the
// thread running the big forward passes (measured: a single-image Predict's
// forward 2.5x slower). Idempotent and cheap after the first call.
void UseOneComputeThreadHere();

}  // namespace graft::core
