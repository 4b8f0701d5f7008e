#include "core/zoo/registry.h"

#include <map>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/zoo/convnext.h"
#include "core/zoo/densenet.h"
#include "core/zoo/efficientnet.h"
#include "core/zoo/inception.h"
#include "core/zoo/keras_native.h"
#include "core/zoo/layers.h"
#include "core/zoo/mnasnet.h"
#include "core/zoo/mobilenet_v2.h"
#include "core/zoo/mobilenet_v3.h"
#include "core/zoo/shufflenet.h"
#include "core/zoo/regnet.h"
#include "core/zoo/resnet.h"
#include "core/zoo/squeezenet.h"
#include "core/zoo/transformers.h"
#include "core/zoo/vgg.h"

namespace graft::core {
namespace {

constexpr char kTorchvisionModels[] = "https://download.pytorch.org/models/";

BackboneSpec Spec(std::string name, std::vector<std::string> aliases, std::string family,
                  int64_t feature_dim, std::string file, std::function<BackbonePtr()> make) {
  BackboneSpec s;
  if (family == "resnet" || family == "shufflenet_v2" || family == "regnet" || family == "inception") {
    s.classifier_prefix = "fc.";
    s.linear_classifier = "fc";
    s.onednn_inference = family == "resnet";
  } else if (family == "vit") {
    s.classifier_prefix = "heads.";
    s.linear_classifier = "heads.head";
  } else if (family == "swin") {
    s.classifier_prefix = "head.";
    s.linear_classifier = "head";
  } else if (family == "densenet") {
    s.classifier_prefix = "classifier.";
    s.linear_classifier = "classifier";
  } else if (family == "mobilenet_v2" || family == "mnasnet" || family == "efficientnet") {
    s.classifier_prefix = "classifier.";
    s.linear_classifier = "classifier.1";
  } else {
    s.classifier_prefix = "classifier.";
  }
  s.name = std::move(name);
  s.aliases = std::move(aliases);
  s.family = std::move(family);
  s.feature_dim = feature_dim;
  s.weights_url = file.empty() ? "" : std::string(kTorchvisionModels) + file;
  s.weights_file = std::move(file);
  s.make = std::move(make);
  return s;
}

BackboneSpec ResNetSpec(const std::string& depth, std::vector<std::string> aliases, bool bottleneck,
                        std::array<int64_t, 4> layers, std::string file, int64_t groups = 1,
                        int64_t width_per_group = 64) {
  ResNetConfig c;
  c.bottleneck = bottleneck;
  c.layers = layers;
  c.groups = groups;
  c.width_per_group = width_per_group;
  const std::string name = depth.find('_') == std::string::npos ? "resnet" + depth : depth;
  return Spec(name, std::move(aliases), "resnet", bottleneck ? 2048 : 512, std::move(file),
              [c]() { return MakeResNet(c); });
}

// The preprocessing of a backbone's official weights (torchvision's
// weights.transforms()): crop, resize, interpolation; ImageNet mean/std
// unless given.
BackboneSpec WithInput(BackboneSpec s, int crop, int resize, const char* interpolation, float mean_std = 0) {
  s.preprocessing.height = s.preprocessing.width = crop;
  s.preprocessing.resize_size = resize;
  s.preprocessing.interpolation = interpolation;
  if (mean_std > 0) {
    s.preprocessing.mean = {mean_std, mean_std, mean_std};
    s.preprocessing.std = {mean_std, mean_std, mean_std};
  }
  return s;
}

}  // namespace

Registry::Registry() {
  specs_.push_back(ResNetSpec("18", {"ResNet18"}, false, {2, 2, 2, 2}, "resnet18-f37072fd.pth"));
  specs_.push_back(ResNetSpec("34", {"ResNet34"}, false, {3, 4, 6, 3}, "resnet34-b627a593.pth"));
  specs_.push_back(ResNetSpec("50", {"ResNet50"}, true, {3, 4, 6, 3}, "resnet50-0676ba61.pth"));
  specs_.push_back(ResNetSpec("101", {"ResNet101"}, true, {3, 4, 23, 3}, "resnet101-63fe2227.pth"));
  specs_.push_back(ResNetSpec("152", {"ResNet152"}, true, {3, 8, 36, 3}, "resnet152-394f9c45.pth"));
  specs_.push_back(ResNetSpec("resnext50_32x4d", {}, true, {3, 4, 6, 3}, "resnext50_32x4d-7cdf4587.pth", 32, 4));
  specs_.push_back(ResNetSpec("resnext101_32x8d", {}, true, {3, 4, 23, 3}, "resnext101_32x8d-8ba56ff5.pth", 32, 8));
  specs_.push_back(ResNetSpec("resnext101_64x4d", {}, true, {3, 4, 23, 3}, "resnext101_64x4d-173b62eb.pth", 64, 4));
  specs_.push_back(ResNetSpec("wide_resnet50_2", {}, true, {3, 4, 6, 3}, "wide_resnet50_2-95faca4d.pth", 1, 128));
  specs_.push_back(ResNetSpec("wide_resnet101_2", {}, true, {3, 4, 23, 3}, "wide_resnet101_2-32ee1156.pth", 1, 128));
  for (const auto& [depth, file, bn_file] :
       std::vector<std::tuple<int, const char*, const char*>>{{11, "vgg11-8a719046.pth", "vgg11_bn-6002323d.pth"},
                                                              {13, "vgg13-19584684.pth", "vgg13_bn-abd245e5.pth"},
                                                              {16, "vgg16-397923af.pth", "vgg16_bn-6c64b313.pth"},
                                                              {19, "vgg19-dcbb9e9d.pth", "vgg19_bn-c79401a0.pth"}}) {
    const std::vector<int> layers = VggLayers(depth);
    std::vector<std::string> aliases;
    if (depth == 16 || depth == 19) aliases.push_back(absl::StrCat("VGG", depth));
    specs_.push_back(Spec(absl::StrCat("vgg", depth), aliases, "vgg", 512, file,
                          [layers]() { return MakeVgg(layers, false); }));
    specs_.push_back(Spec(absl::StrCat("vgg", depth, "_bn"), {}, "vgg", 512, bn_file,
                          [layers]() { return MakeVgg(layers, true); }));
  }
  specs_.push_back(Spec("alexnet", {"AlexNet"}, "alexnet", 256, "alexnet-owt-7be5be79.pth",
                        []() { return MakeAlexNet(); }));
  for (const auto& [depth, growth, init, blocks, file] :
       std::vector<std::tuple<int, int64_t, int64_t, std::array<int64_t, 4>, const char*>>{
           {121, 32, 64, {6, 12, 24, 16}, "densenet121-a639ec97.pth"},
           {161, 48, 96, {6, 12, 36, 24}, "densenet161-8d451a50.pth"},
           {169, 32, 64, {6, 12, 32, 32}, "densenet169-b2777c0a.pth"},
           {201, 32, 64, {6, 12, 48, 32}, "densenet201-c1103571.pth"}}) {
    DenseNetConfig c;
    c.growth_rate = growth;
    c.num_init_features = init;
    c.block_config = blocks;
    int64_t features = init;
    for (size_t b = 0; b < blocks.size(); ++b) {
      features += blocks[b] * growth;
      if (b + 1 < blocks.size()) features /= 2;
    }
    std::vector<std::string> aliases;
    if (depth != 161) aliases.push_back(absl::StrCat("DenseNet", depth));
    BackboneSpec s = Spec(absl::StrCat("densenet", depth), aliases, "densenet", features, file,
                          [c]() { return MakeDenseNet(c); });
    s.rename_key = DenseNetKey;
    specs_.push_back(std::move(s));
  }
  specs_.push_back(Spec("mobilenet_v2", {"MobileNetV2"}, "mobilenet_v2", 1280, "mobilenet_v2-b0353104.pth",
                        []() { return MakeMobileNetV2(); }));
  specs_.push_back(Spec("mobilenet_v3_large", {"MobileNetV3Large"}, "mobilenet_v3", 960,
                        "mobilenet_v3_large-8738ca79.pth", []() { return MakeMobileNetV3(true); }));
  specs_.push_back(Spec("mobilenet_v3_small", {"MobileNetV3Small"}, "mobilenet_v3", 576,
                        "mobilenet_v3_small-047dcff4.pth", []() { return MakeMobileNetV3(false); }));
  for (const auto& [name, out, file] : std::vector<std::tuple<const char*, std::array<int64_t, 5>, const char*>>{
           {"shufflenet_v2_x0_5", {24, 48, 96, 192, 1024}, "shufflenetv2_x0.5-f707e7126e.pth"},
           {"shufflenet_v2_x1_0", {24, 116, 232, 464, 1024}, "shufflenetv2_x1-5666bf0f80.pth"},
           {"shufflenet_v2_x1_5", {24, 176, 352, 704, 1024}, "shufflenetv2_x1_5-3c479a10.pth"},
           {"shufflenet_v2_x2_0", {24, 244, 488, 976, 2048}, "shufflenetv2_x2_0-8be3c8ee.pth"}}) {
    specs_.push_back(Spec(name, {}, "shufflenet_v2", out[4], file, [out = out]() { return MakeShuffleNetV2(out); }));
  }
  for (const auto& [name, alpha, file] : std::vector<std::tuple<const char*, double, const char*>>{
           {"mnasnet0_5", 0.5, "mnasnet0.5_top1_67.823-3ffadce67e.pth"},
           {"mnasnet0_75", 0.75, "mnasnet0_75-7090bc5f.pth"},
           {"mnasnet1_0", 1.0, "mnasnet1.0_top1_73.512-f206786ef8.pth"},
           {"mnasnet1_3", 1.3, "mnasnet1_3-a4c69d6f.pth"}}) {
    specs_.push_back(Spec(name, {}, "mnasnet", 1280, file, [alpha = alpha]() { return MakeMnasNet(alpha); }));
  }
  for (const auto& [variant, file, crop, resize] : std::vector<std::tuple<int, const char*, int, int>>{
           {0, "efficientnet_b0_rwightman-3dd342df.pth", 224, 256},
           {1, "efficientnet_b1_rwightman-533bc792.pth", 240, 256},
           {2, "efficientnet_b2_rwightman-bcdf34b7.pth", 288, 288},
           {3, "efficientnet_b3_rwightman-cf984f9c.pth", 300, 320},
           {4, "efficientnet_b4_rwightman-7eb33cd5.pth", 380, 384},
           {5, "efficientnet_b5_lukemelas-b6417697.pth", 456, 456},
           {6, "efficientnet_b6_lukemelas-c76e70fd.pth", 528, 528},
           {7, "efficientnet_b7_lukemelas-dcc49843.pth", 600, 600}}) {
    const EfficientNetConfig c = EfficientNetB(variant);
    const int64_t dim = 4 * MakeDivisible(320 * c.width_mult);
    specs_.push_back(WithInput(Spec(absl::StrCat("efficientnet_b", variant), {absl::StrCat("EfficientNetB", variant)},
                                    "efficientnet", dim, file, [c]() { return MakeEfficientNet(c); }),
                               crop, resize, "bicubic"));
  }
  for (const auto& [size, file, crop, interpolation, mean_std] :
       std::vector<std::tuple<char, const char*, int, const char*, float>>{
           {'s', "efficientnet_v2_s-dd5fe13b.pth", 384, "bilinear", 0},
           {'m', "efficientnet_v2_m-dc08266a.pth", 480, "bilinear", 0},
           {'l', "efficientnet_v2_l-59c71312.pth", 480, "bicubic", 0.5f}}) {
    const EfficientNetConfig c = EfficientNetV2(size);
    const char upper = static_cast<char>(size - 'a' + 'A');
    specs_.push_back(WithInput(Spec(absl::StrCat("efficientnet_v2_", std::string(1, size)),
                                    {absl::StrCat("EfficientNetV2", std::string(1, upper))}, "efficientnet", 1280,
                                    file, [c]() { return MakeEfficientNet(c); }),
                               crop, crop, interpolation, mean_std));
  }
  for (const auto& [size, file, resize] : std::vector<std::tuple<const char*, const char*, int>>{
           {"tiny", "convnext_tiny-983f1562.pth", 236},
           {"small", "convnext_small-0c510722.pth", 230},
           {"base", "convnext_base-6075fbad.pth", 232},
           {"large", "convnext_large-ea097f82.pth", 232}}) {
    const ConvNeXtConfig c = ConvNeXtSize(size);
    std::string keras = absl::StrCat("ConvNeXt", size);
    keras[8] = static_cast<char>(std::toupper(static_cast<unsigned char>(keras[8])));
    specs_.push_back(WithInput(Spec(absl::StrCat("convnext_", size), {keras}, "convnext", c.dims[3], file,
                                    [c]() { return MakeConvNeXt(c); }),
                               224, resize, "bilinear"));
  }
  for (const auto& [variant, file] : std::vector<std::pair<const char*, const char*>>{
           {"x_400mf", "regnet_x_400mf-adf1edd5.pth"}, {"x_800mf", "regnet_x_800mf-ad17e45c.pth"},
           {"x_1_6gf", "regnet_x_1_6gf-e3633e7f.pth"}, {"x_3_2gf", "regnet_x_3_2gf-f342aeae.pth"},
           {"x_8gf", "regnet_x_8gf-03ceed89.pth"},     {"x_16gf", "regnet_x_16gf-2007eb11.pth"},
           {"x_32gf", "regnet_x_32gf-9d47f8d0.pth"},   {"y_400mf", "regnet_y_400mf-c65dace8.pth"},
           {"y_800mf", "regnet_y_800mf-1b27b58c.pth"}, {"y_1_6gf", "regnet_y_1_6gf-b11a554e.pth"},
           {"y_3_2gf", "regnet_y_3_2gf-b5a9779c.pth"}, {"y_8gf", "regnet_y_8gf-d0d0e4a8.pth"},
           {"y_16gf", "regnet_y_16gf-9e6ed7dd.pth"},   {"y_32gf", "regnet_y_32gf-4dee3f7a.pth"}}) {
    const RegNetConfig c = RegNetVariant(variant);
    specs_.push_back(Spec(absl::StrCat("regnet_", variant), {}, "regnet", c.stages[3].width, file,
                          [c]() { return MakeRegNet(c); }));
  }
  BackboneSpec inception = WithInput(
      Spec("inception_v3", {"InceptionV3"}, "inception", 2048, "inception_v3_google-0cc3c7bd.pth",
           []() { return MakeInceptionV3(); }),
      299, 342, "bilinear");
  inception.rename_key = InceptionKey;
  specs_.push_back(std::move(inception));
  BackboneSpec googlenet = Spec("googlenet", {"GoogLeNet"}, "inception", 1024, "googlenet-1378be20.pth",
                                []() { return MakeGoogLeNet(); });
  googlenet.rename_key = InceptionKey;
  specs_.push_back(std::move(googlenet));
  // Keras-only: timm's names, Keras's input (299, scaled to [-1, 1]) and
  // parameter counts; no official torchvision file.
  for (const auto& [name, alias, family, dim, count] :
       std::vector<std::tuple<const char*, const char*, const char*, int64_t, int64_t>>{
           {"xception", "Xception", "xception", 2048, 22910480},
           {"inception_resnet_v2", "InceptionResNetV2", "inception_resnet_v2", 1536, 55873736}}) {
    const bool xception = std::string(name) == "xception";
    BackboneSpec s = WithInput(Spec(name, {alias}, family, dim, "",
                                    [xception]() { return xception ? MakeXception() : MakeInceptionResNetV2(); }),
                               299, 333, "bicubic", 0.5f);
    s.reference = "timm";
    s.classifier_prefix = xception ? "fc." : "classif.";
    s.linear_classifier = xception ? "fc" : "classif";
    s.rename_key = xception ? XceptionKey : InceptionResNetV2Key;
    s.parameter_count = count;
    specs_.push_back(std::move(s));
  }
  for (const auto& [patch, file] : std::vector<std::pair<int64_t, const char*>>{{16, "vit_b_16-c867db91.pth"},
                                                                              {32, "vit_b_32-d86f8d99.pth"}}) {
    BackboneSpec s = Spec(absl::StrCat("vit_b_", patch), {}, "vit", 768, file, [patch = patch]() { return MakeViT(patch); });
    s.rename_key = ViTKey;
    specs_.push_back(std::move(s));
  }
  for (const auto& [size, file, resize] : std::vector<std::tuple<char, const char*, int>>{
           {'t', "swin_t-704ceda3.pth", 232}, {'s', "swin_s-5e29d889.pth", 246}, {'b', "swin_b-68c6b09e.pth", 238}}) {
    const SwinConfig c = SwinSize(size);
    specs_.push_back(WithInput(Spec(absl::StrCat("swin_", std::string(1, size)), {}, "swin", c.embed_dim * 8, file,
                                    [c]() { return MakeSwin(c); }),
                               224, resize, "bicubic"));
  }
  specs_.push_back(Spec("squeezenet1_0", {"SqueezeNet1_0", "SqueezeNet"}, "squeezenet", 512,
                        "squeezenet1_0-b66bff10.pth", []() { return MakeSqueezeNet(false); }));
  specs_.push_back(Spec("squeezenet1_1", {"SqueezeNet1_1"}, "squeezenet", 512, "squeezenet1_1-b8a52dc0.pth",
                        []() { return MakeSqueezeNet(true); }));
  // torchvision's own parameter counts (1000 classes).
  static const std::map<std::string, int64_t> kParameters = {
      {"resnet18", 11689512},
      {"resnet34", 21797672},
      {"resnet50", 25557032},
      {"resnet101", 44549160},
      {"resnet152", 60192808},
      {"resnext50_32x4d", 25028904},
      {"resnext101_32x8d", 88791336},
      {"resnext101_64x4d", 83455272},
      {"wide_resnet50_2", 68883240},
      {"wide_resnet101_2", 126886696},
      {"vgg11", 132863336},
      {"vgg11_bn", 132868840},
      {"vgg13", 133047848},
      {"vgg13_bn", 133053736},
      {"vgg16", 138357544},
      {"vgg16_bn", 138365992},
      {"vgg19", 143667240},
      {"vgg19_bn", 143678248},
      {"alexnet", 61100840},
      {"mobilenet_v2", 3504872},
      {"squeezenet1_0", 1248424},
      {"squeezenet1_1", 1235496},
      {"densenet121", 7978856},
      {"mobilenet_v3_large", 5483032},
      {"mnasnet0_5", 2218512},
      {"mnasnet0_75", 3170208},
      {"mnasnet1_0", 4383312},
      {"mnasnet1_3", 6282256},
      {"shufflenet_v2_x0_5", 1366792},
      {"shufflenet_v2_x1_0", 2278604},
      {"shufflenet_v2_x1_5", 3503624},
      {"shufflenet_v2_x2_0", 7393996},
      {"mobilenet_v3_small", 2542856},
      {"densenet161", 28681000},
      {"densenet169", 14149480},
      {"densenet201", 20013928},
      {"convnext_tiny", 28589128},
      {"convnext_small", 50223688},
      {"convnext_base", 88591464},
      {"convnext_large", 197767336},
      {"regnet_x_400mf", 5495976},
      {"regnet_x_800mf", 7259656},
      {"regnet_x_1_6gf", 9190136},
      {"regnet_x_3_2gf", 15296552},
      {"regnet_x_8gf", 39572648},
      {"regnet_x_16gf", 54278536},
      {"regnet_x_32gf", 107811560},
      {"regnet_y_400mf", 4344144},
      {"regnet_y_800mf", 6432512},
      {"regnet_y_1_6gf", 11202430},
      {"regnet_y_3_2gf", 19436338},
      {"regnet_y_8gf", 39381472},
      {"regnet_y_16gf", 83590140},
      {"regnet_y_32gf", 145046770},
      {"inception_v3", 23834568},
      {"googlenet", 6624904},
      {"vit_b_16", 86567656},
      {"vit_b_32", 88224232},
      {"swin_t", 28288354},
      {"swin_s", 49606258},
      {"swin_b", 87768224},
      {"efficientnet_b0", 5288548},
      {"efficientnet_b1", 7794184},
      {"efficientnet_b2", 9109994},
      {"efficientnet_b3", 12233232},
      {"efficientnet_b4", 19341616},
      {"efficientnet_b5", 30389784},
      {"efficientnet_b6", 43040704},
      {"efficientnet_b7", 66347960},
      {"efficientnet_v2_s", 21458488},
      {"efficientnet_v2_m", 54139356},
      {"efficientnet_v2_l", 118515272},
  };
  for (BackboneSpec& s : specs_) {
    const auto it = kParameters.find(s.name);
    if (it != kParameters.end()) s.parameter_count = it->second;  // the Keras-only ones have theirs
  }
}

StateDict ToModuleNames(const BackboneSpec& spec, StateDict weights) {
  if (!spec.rename_key) return weights;
  StateDict out;
  for (auto& [name, tensor] : weights) {
    std::string renamed = spec.rename_key(name);
    if (!renamed.empty()) out.emplace_back(std::move(renamed), std::move(tensor));
  }
  return out;
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
