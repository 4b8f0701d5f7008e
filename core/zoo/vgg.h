#pragma once

#include <vector>

#include "core/zoo/backbone.h"

namespace graft::core {

// torchvision.models.VGG: `layers` conv widths with 0 marking a max-pool
// (the "A"/"B"/"D"/"E" configurations), optionally with batch norm. Blocks are
// Keras's: "block1" ... "block5", each ending at its max-pool.
BackbonePtr MakeVgg(const std::vector<int>& layers, bool batch_norm, int64_t num_classes = 1000);
std::vector<int> VggLayers(int depth);  // 11, 13, 16, 19

// torchvision.models.AlexNet. Blocks: "conv1" ... "conv5" (each with its
// activation and the max-pool that follows it, if any).
BackbonePtr MakeAlexNet(int64_t num_classes = 1000);

}  // namespace graft::core
