#pragma once

#include "core/zoo/backbone.h"

namespace graft::core {

// torchvision.models.mnasnet0_5 / 0_75 / 1_0 / 1_3 (`alpha` is the width).
// Blocks: "stem" (layers.0-7), each inverted residual "layers.8.0" ...
// "layers.13.0", and "head" (layers.14-16: the 1x1 conv to 1280).
BackbonePtr MakeMnasNet(double alpha, int64_t num_classes = 1000);

}  // namespace graft::core
