#pragma once

#include <array>

#include "core/zoo/backbone.h"

namespace graft::core {

// torchvision.models.shufflenet_v2_x0_5 ... x2_0 (`out` = stages_out_channels).
// Blocks: "stem" (conv1 + max-pool), every unit "stage2.0" ... "stage4.3",
// "conv5".
BackbonePtr MakeShuffleNetV2(const std::array<int64_t, 5>& out, int64_t num_classes = 1000);

}  // namespace graft::core
