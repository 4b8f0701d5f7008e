#include "core/zoo/torchscript_backbone.h"
#include "core/util/json.h"

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/util/files.h"
#include "core/util/ids.h"
#include "core/util/status_macros.h"
#include "core/zoo/archive_check.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace {

namespace fs = std::filesystem;

std::string ShapeString(const torch::Tensor& t) { return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]"); }

// The user's module as one trunk block. Its parameters live in the script
// module, not in this nn::Module: the state dict is empty and nothing of it
// trains; FoldOwn freezes and optimises the inference copy.
class TorchScriptBackboneImpl : public BackboneImpl {
 public:
  TorchScriptBackboneImpl(torch::jit::Module module, std::string name)
      : module_(std::move(module)), name_(std::move(name)) {
    blocks_.push_back({"trunk", {"trunk."}});
  }

  torch::Tensor ForwardHead(const torch::Tensor&) override {
    throw std::runtime_error("custom backbone '" + name_ + "' has no ImageNet head");
  }

  void train(bool on) override {
    BackboneImpl::train(on);
    module_.train(on);
  }
  using BackboneImpl::to;
  void to(torch::Device device, bool non_blocking) override {
    BackboneImpl::to(device, non_blocking);
    module_.to(device, non_blocking);
  }

  int64_t ParameterCount() const override {
    int64_t n = 0;
    for (const auto& p : module_.parameters()) n += p.numel();
    return n;
  }
  int64_t StateBytes() const override {
    int64_t n = 0;
    for (const auto& p : module_.parameters()) n += p.numel() * static_cast<int64_t>(p.element_size());
    for (const auto& b : module_.buffers()) n += b.numel() * static_cast<int64_t>(b.element_size());
    return n;
  }

 protected:
  torch::Tensor ForwardBlock(size_t, const torch::Tensor& x) override {
    torch::Tensor y = module_.forward({x}).toTensor();
    return y.dim() == 2 ? y.unsqueeze(-1).unsqueeze(-1) : y;
  }

  // Freezing inlines the weights as constants (after the move to the
  // device) and optimize_for_inference folds batch norms; a module that
  // cannot be frozen runs as it is.
  void FoldOwn() override {
    module_.eval();
    try {
      module_ = torch::jit::optimize_for_inference(module_);
    } catch (const std::exception&) {
    }
  }

 private:
  torch::jit::Module module_;
  std::string name_;
};

}  // namespace

absl::Status ValidateCustomName(const std::string& name) {
  const bool ok = IsPlainName(name, 64) && std::isalnum(static_cast<unsigned char>(name[0]));
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backbone name '", name, "' must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Preprocessing> CompletePreprocessing(Preprocessing p, bool mean_std_set) {
  const Preprocessing imagenet;
  if (p.height < 0 || p.width < 0 || p.resize_size < 0 || p.height > 4096 || p.width > 4096 || p.resize_size > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("preprocessing sizes must be between 1 and 4096, got height ",
                                                   p.height, ", width ", p.width, ", resize_size ", p.resize_size));
  }
  if (p.height == 0) p.height = p.width != 0 ? p.width : imagenet.height;
  if (p.width == 0) p.width = p.height;
  if (p.resize_size == 0) p.resize_size = std::max(p.height, p.width) * imagenet.resize_size / imagenet.height;
  if (p.resize_size < std::max(p.height, p.width)) {
    return absl::InvalidArgumentError(absl::StrCat("preprocessing resize_size ", p.resize_size,
                                                   " is smaller than the ", p.height, "x", p.width, " crop"));
  }
  if (!mean_std_set) {
    p.mean = imagenet.mean;
    p.std = imagenet.std;
  }
  for (float s : p.std) {
    if (!(s > 0)) return absl::InvalidArgumentError(absl::StrCat("preprocessing std must be positive, got ", s));
  }
  if (p.interpolation.empty()) p.interpolation = imagenet.interpolation;
  if (p.interpolation != "bilinear" && p.interpolation != "bicubic") {
    return absl::InvalidArgumentError("preprocessing interpolation must be bilinear or bicubic, got '" +
                                      p.interpolation + "'");
  }
  return p;
}

absl::StatusOr<BackboneSpec> LoadTorchScriptBackbone(const CustomBackboneDef& def) {
  RETURN_IF_ERROR(ValidateCustomName(def.name));
  if (def.feature_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("feature_dim must be positive, got ", def.feature_dim));
  }
  std::error_code ec;
  if (!fs::is_regular_file(def.torchscript_path, ec)) {
    return absl::InvalidArgumentError("TorchScript file '" + def.torchscript_path + "' does not exist on the server");
  }
  // TorchScript is code and its archive is parsed by LibTorch: graft checks
  // the archive's shape first (a crafted one would exhaust the stack).
  if (absl::Status checked = CheckTorchArchive(def.torchscript_path); !checked.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", def.torchscript_path, "' is not a TorchScript file graft loads: ", checked.message()));
  }
  ASSIGN_OR_RETURN(torch::jit::Module module,
                   GuardExceptions(absl::StatusCode::kInvalidArgument,
                                   "'" + def.torchscript_path + "' is not a TorchScript file torch.jit.load accepts",
                                   [&]() -> absl::StatusOr<torch::jit::Module> {
                                     return torch::jit::load(def.torchscript_path, torch::kCPU);
                                   }));
  if (!module.find_method("forward").has_value()) {
    return absl::InvalidArgumentError("'" + def.torchscript_path + "' has no forward method");
  }
  const Preprocessing& p = def.preprocessing;
  const torch::Tensor probe = torch::zeros({2, 3, p.height, p.width});
  const std::string input = ShapeString(probe);
  ASSIGN_OR_RETURN(const torch::jit::IValue out,
                   GuardExceptions(absl::StatusCode::kInvalidArgument,
                                   absl::StrCat("'", def.name, "' failed on a ", input, " batch"),
                                   [&]() -> absl::StatusOr<torch::jit::IValue> {
                                     c10::InferenceMode guard;
                                     module.eval();
                                     return module.forward({probe});
                                   }));
  if (!out.isTensor()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", def.name, "' returns a ", std::string(out.tagKind()), " for a ", input, " batch, not a tensor"));
  }
  const torch::Tensor y = out.toTensor();
  if ((y.dim() != 2 && y.dim() != 4) || y.size(0) != 2 || y.size(1) != def.feature_dim) {
    return absl::InvalidArgumentError(absl::StrCat("'", def.name, "' produces ", ShapeString(y), " for a ", input,
                                                   " batch; feature_dim ", def.feature_dim, " needs [2, ",
                                                   def.feature_dim, "] or [2, ", def.feature_dim, ", h, w]"));
  }
  if (!y.is_floating_point()) {
    return absl::InvalidArgumentError(absl::StrCat("'", def.name, "' produces ", std::string(y.dtype().name()), " features"));
  }
  BackboneSpec s;
  s.name = def.name;
  s.family = "torchscript";
  s.custom = true;
  s.source = def.torchscript_path;
  s.preprocessing = p;
  s.feature_dim = def.feature_dim;
  s.num_classes = 0;
  const auto shared = std::make_shared<torch::jit::Module>(module);
  const std::string name = def.name;
  s.make = [shared, name]() -> BackbonePtr {
    return std::make_shared<TorchScriptBackboneImpl>(shared->clone(), name);
  };
  s.parameter_count = s.make()->ParameterCount();
  return s;
}

std::string CustomManifestJson(const CustomBackboneDef& def) {
  const Preprocessing& p = def.preprocessing;
  nlohmann::json j = {{"name", def.name},
                      {"torchscript", def.torchscript_path},
                      {"feature_dim", def.feature_dim},
                      {"preprocessing",
                       {{"height", p.height},
                        {"width", p.width},
                        {"resize_size", p.resize_size},
                        {"mean", p.mean},
                        {"std", p.std},
                        {"interpolation", p.interpolation}}}};
  return j.dump(2) + "\n";
}

absl::StatusOr<CustomBackboneDef> ReadCustomManifest(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFile(path));
  return GuardExceptions(
      absl::StatusCode::kInvalidArgument, "manifest " + path, [&]() -> absl::StatusOr<CustomBackboneDef> {
        const nlohmann::json j = nlohmann::json::parse(text);
        CustomBackboneDef def;
        def.name = j.at("name").get<std::string>();
        fs::path script = j.at("torchscript").get<std::string>();
        if (script.is_relative()) script = fs::path(path).parent_path() / script;
        def.torchscript_path = script.string();
        def.feature_dim = JsonInt<int64_t>(j.at("feature_dim"));
        bool mean_std_set = false;
        if (j.contains("preprocessing")) {
          const auto& p = j.at("preprocessing");
          def.preprocessing.height = JsonInt(p, "height", 0);
          def.preprocessing.width = JsonInt(p, "width", 0);
          def.preprocessing.resize_size = JsonInt(p, "resize_size", 0);
          if (p.contains("mean") || p.contains("std")) {
            def.preprocessing.mean = JsonFloat3(p.at("mean"));
            def.preprocessing.std = JsonFloat3(p.at("std"));
            mean_std_set = true;
          }
          def.preprocessing.interpolation = p.value("interpolation", "");
        } else {
          def.preprocessing.height = def.preprocessing.width = def.preprocessing.resize_size = 0;
        }
        ASSIGN_OR_RETURN(def.preprocessing, CompletePreprocessing(def.preprocessing, mean_std_set));
        return def;
      });
}

}  // namespace graft::core
