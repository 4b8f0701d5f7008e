#pragma once

// The one stratified validation split: of every class, `fraction` of its
// images validate (at least one when it has two or more), drawn by a seeded
// shuffle of the class's images in path order. An upload's FLAT split and a
// job's own split (JobSpec::validation_fraction) are both this.

#include <cstdint>
#include <string>
#include <vector>

namespace graft::core {

struct SplitItem {
  int label = 0;
  std::string path;
};

// For each item, whether it validates.
std::vector<bool> StratifiedValidation(const std::vector<SplitItem>& items, double fraction, uint64_t seed);

}  // namespace graft::core
