#pragma once

#include "core/zoo/backbone.h"

namespace graft::core {

// torchvision.models.inception_v3 (299x299 input) and googlenet, as their
// published weights run them: transform_input on (the ImageNet-normalised
// input re-normalised to the [-1, 1] range the Google weights expect), no
// auxiliary classifiers (their weights in the published files are dropped by
// InceptionKey). Blocks: each BasicConv2d of the stem, each Mixed_* /
// inception* module (max pools belong to the block before them).
BackbonePtr MakeInceptionV3(int64_t num_classes = 1000);
BackbonePtr MakeGoogLeNet(int64_t num_classes = 1000);

// Published key -> module key; empty for the auxiliary classifiers.
std::string InceptionKey(const std::string& key);

}  // namespace graft::core
