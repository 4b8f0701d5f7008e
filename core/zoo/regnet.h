#pragma once

#include <array>
#include <string>

#include "core/zoo/backbone.h"

namespace graft::core {

struct RegNetStage {
  int64_t depth, width, group_width;
};

struct RegNetConfig {
  std::array<RegNetStage, 4> stages;
  bool squeeze_excite = false;  // RegNetY: SE with ratio 0.25
};

// "x_400mf" … "x_32gf", "y_400mf" … "y_32gf".
RegNetConfig RegNetVariant(const std::string& variant);

// Blocks: "stem", every ResBottleneckBlock ("trunk_output.block1.block1-0" …).
BackbonePtr MakeRegNet(const RegNetConfig& config, int64_t num_classes = 1000);

}  // namespace graft::core
