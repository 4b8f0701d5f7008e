#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/data/preprocessing.h"
#include "core/zoo/backbone.h"
#include "core/zoo/state_dict.h"

namespace graft::core {

// What graft knows about a backbone architecture before any weights load.
struct BackboneSpec {
  std::string name;                  // torchvision name
  std::vector<std::string> aliases;  // Keras Applications names
  std::string family;
  Preprocessing preprocessing;
  int64_t feature_dim = 0;
  int64_t num_classes = 1000;
  std::string weights_file;  // official torchvision file name (hash prefix included)
  std::string weights_url;
  // The pretrained classifier's parameter prefix ("fc.", "classifier.") and,
  // where it is one Linear on pooled features, its module name ("fc",
  // "classifier.1"): an exported model with a linear head uses that name.
  std::string classifier_prefix;
  std::string linear_classifier;
  std::function<BackbonePtr()> make;
  // Every op of the family has a oneDNN kernel and runs faster in oneDNN's
  // layout on CPU (measured, bench/README.md): BackboneImpl::UseOneDnnLayout.
  bool onednn_inference = false;
  // With the 1000-class classifier, as torchvision counts it; known up front
  // so that listing the zoo builds no model (tests check it against make()).
  int64_t parameter_count = 0;
  // Maps names in the published weights onto the module's (older files);
  // an empty name drops the tensor (auxiliary classifiers graft does not build).
  std::function<std::string(const std::string&)> rename_key;
  // A TorchScript backbone registered by a user (core/zoo/torchscript_backbone):
  // no ImageNet head (num_classes 0), one block, `source` is its file.
  bool custom = false;
  std::string source;
  // Whose model graft's matches name for name: "torchvision", or "timm" for
  // the Keras backbones with no torchvision twin (Xception,
  // InceptionResNetV2), whose parameter_count is Keras's.
  std::string reference = "torchvision";
};

// A published state dict in the module's names (spec.rename_key applied,
// dropped tensors removed).
StateDict ToModuleNames(const BackboneSpec& spec, StateDict weights);

// The built-in architectures, immutable.
class Registry {
 public:
  static const Registry& BuiltIn();

  // By torchvision name or alias; exact first, then case-insensitive.
  const BackboneSpec* Find(std::string_view name) const;
  const std::vector<BackboneSpec>& specs() const { return specs_; }

 private:
  Registry();
  std::vector<BackboneSpec> specs_;
};

}  // namespace graft::core
