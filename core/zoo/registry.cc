#include "core/zoo/registry.h"

#include "absl/strings/match.h"
#include "core/zoo/mobilenet_v2.h"
#include "core/zoo/resnet.h"
#include "core/zoo/squeezenet.h"

namespace graft::core {
namespace {

constexpr char kTorchvisionModels[] = "https://download.pytorch.org/models/";

BackboneSpec Spec(std::string name, std::vector<std::string> aliases, std::string family,
                  int64_t feature_dim, std::string file, std::function<BackbonePtr()> make) {
  BackboneSpec s;
  if (family == "resnet") {
    s.classifier_prefix = "fc.";
    s.linear_classifier = "fc";
    s.onednn_inference = true;
  } else if (family == "mobilenet_v2") {
    s.classifier_prefix = "classifier.";
    s.linear_classifier = "classifier.1";
  } else {
    s.classifier_prefix = "classifier.";
  }
  s.name = std::move(name);
  s.aliases = std::move(aliases);
  s.family = std::move(family);
  s.feature_dim = feature_dim;
  s.weights_url = std::string(kTorchvisionModels) + file;
  s.weights_file = std::move(file);
  s.make = std::move(make);
  return s;
}

BackboneSpec ResNetSpec(const std::string& depth, std::vector<std::string> aliases, bool bottleneck,
                        std::array<int64_t, 4> layers, std::string file) {
  ResNetConfig c;
  c.bottleneck = bottleneck;
  c.layers = layers;
  return Spec("resnet" + depth, std::move(aliases), "resnet", bottleneck ? 2048 : 512, std::move(file),
              [c]() { return MakeResNet(c); });
}

}  // namespace

Registry::Registry() {
  specs_.push_back(ResNetSpec("18", {"ResNet18"}, false, {2, 2, 2, 2}, "resnet18-f37072fd.pth"));
  specs_.push_back(ResNetSpec("34", {"ResNet34"}, false, {3, 4, 6, 3}, "resnet34-b627a593.pth"));
  specs_.push_back(ResNetSpec("50", {"ResNet50"}, true, {3, 4, 6, 3}, "resnet50-0676ba61.pth"));
  specs_.push_back(ResNetSpec("101", {"ResNet101"}, true, {3, 4, 23, 3}, "resnet101-63fe2227.pth"));
  specs_.push_back(ResNetSpec("152", {"ResNet152"}, true, {3, 8, 36, 3}, "resnet152-394f9c45.pth"));
  specs_.push_back(Spec("mobilenet_v2", {"MobileNetV2"}, "mobilenet_v2", 1280, "mobilenet_v2-b0353104.pth",
                        []() { return MakeMobileNetV2(); }));
  specs_.push_back(Spec("squeezenet1_0", {"SqueezeNet1_0", "SqueezeNet"}, "squeezenet", 512,
                        "squeezenet1_0-b66bff10.pth", []() { return MakeSqueezeNet(false); }));
  specs_.push_back(Spec("squeezenet1_1", {"SqueezeNet1_1"}, "squeezenet", 512, "squeezenet1_1-b8a52dc0.pth",
                        []() { return MakeSqueezeNet(true); }));
}

const Registry& Registry::BuiltIn() {
  static const Registry* registry = new Registry();
  return *registry;
}

const BackboneSpec* Registry::Find(std::string_view name) const {
  for (const auto& s : specs_) {
    if (s.name == name) return &s;
    for (const auto& a : s.aliases) {
      if (a == name) return &s;
    }
  }
  for (const auto& s : specs_) {
    if (absl::EqualsIgnoreCase(s.name, absl::string_view(name.data(), name.size()))) return &s;
    for (const auto& a : s.aliases) {
      if (absl::EqualsIgnoreCase(a, absl::string_view(name.data(), name.size()))) return &s;
    }
  }
  return nullptr;
}

}  // namespace graft::core
