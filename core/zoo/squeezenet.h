#pragma once

#include "core/zoo/backbone.h"

namespace graft::core {

// torchvision.models.squeezenet1_0 / squeezenet1_1 ("1_0" or "1_1"). Blocks:
// "stem" (the first conv, relu and pool), then one per Fire module, each
// taking the max-pool before it along.
BackbonePtr MakeSqueezeNet(bool v1_1, int64_t num_classes = 1000);

}  // namespace graft::core
