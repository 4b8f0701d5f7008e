// graft backbones | backbone | predict | embed | health

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli_commands.h"
#include "client/client.h"
#include "core/util/files.h"

namespace graft::client {
namespace {

std::string HumanCount(int64_t n) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << (static_cast<double>(n) / 1e6) << "M";
  return s.str();
}

absl::Status Backbones(GraftClient& client, const Globals& g, std::ostream& out) {
  auto r = client.ListBackbones();
  if (!r.ok()) return r.status();
  if (g.json) {
    out << ToJson(*r) << "\n";
    return absl::OkStatus();
  }
  out << std::left << std::setw(20) << "NAME" << std::setw(26) << "ALIASES" << std::setw(14) << "FAMILY"
      << std::setw(9) << "PARAMS" << std::setw(9) << "FEATURES" << std::setw(9) << "WEIGHTS" << std::setw(22)
      << "RESIDENT" << std::setw(7) << "PINNED" << "LAST USED\n";
  for (const auto& b : r->backbones()) {
    const auto& res = b.residency();
    const std::string resident = res.device().empty() ? "-" : absl::StrCat(res.device(), " ", HumanBytes(res.bytes()));
    out << std::left << std::setw(20) << b.name() << std::setw(26) << absl::StrJoin(b.aliases(), ",") << std::setw(14)
        << b.family() << std::setw(9) << HumanCount(b.parameter_count()) << std::setw(9) << b.feature_dim()
        << std::setw(9) << (b.weights().present() ? "yes" : (b.weights().error().empty() ? "no" : "error"))
        << std::setw(22) << resident << std::setw(7) << (res.pinned() ? "yes" : "-")
        << (res.has_last_used_at() ? Timestamp(res.last_used_at().seconds()) : "-") << "\n";
  }
  const auto& m = r->memory();
  out << "\ndevice memory (" << m.device() << "): "
      << HumanBytes(m.backbone_bytes() + m.model_bytes() + m.job_bytes()) << " of "
      << (m.budget_bytes() > 0 ? HumanBytes(m.budget_bytes()) : "unbounded") << " (--device_memory_budget): backbones "
      << HumanBytes(m.backbone_bytes()) << ", models " << HumanBytes(m.model_bytes()) << ", jobs "
      << HumanBytes(m.job_bytes()) << "\n";
  return absl::OkStatus();
}

// What load, unload and pin answer: the backbone's residency.
absl::Status ShowResidency(const absl::StatusOr<v1::Backbone>& b, const Globals& g, std::ostream& out) {
  if (!b.ok()) return b.status();
  if (g.json) {
    out << ToJson(*b) << "\n";
    return absl::OkStatus();
  }
  const auto& r = b->residency();
  out << b->name() << ": "
      << (r.device().empty() ? "not resident" : absl::StrCat("resident on ", r.device(), ", ", HumanBytes(r.bytes())))
      << (r.pinned() ? ", pinned" : "") << "\n";
  return absl::OkStatus();
}

absl::Status Backbone(GraftClient& client, const Globals& g, const std::string& name, std::ostream& out) {
  auto b = client.GetBackbone(name);
  if (!b.ok()) return b.status();
  if (g.json) {
    out << ToJson(*b) << "\n";
    return absl::OkStatus();
  }
  const auto& p = b->preprocessing();
  out << "name:        " << b->name() << "\n"
      << "aliases:     " << absl::StrJoin(b->aliases(), ", ") << "\n"
      << "family:      " << b->family() << "\n"
      << "parameters:  " << b->parameter_count() << "\n"
      << "input:       " << p.height() << "x" << p.width() << " (resize " << p.resize_size() << ", "
      << p.interpolation() << ")\n"
      << "mean/std:    [" << absl::StrJoin(p.mean(), ", ") << "] / [" << absl::StrJoin(p.std(), ", ") << "]\n"
      << "features:    " << b->feature_dim() << "\n"
      << "classes:     " << b->num_classes() << "\n"
      << "blocks:      " << b->blocks_size() << " (" << absl::StrJoin(b->blocks(), " ") << ")\n"
      << "weights:     " << (b->weights().present() ? b->weights().path() : "not present") << "\n";
  if (!b->weights().error().empty()) out << "weights err: " << b->weights().error() << "\n";
  out << "official:    " << b->weights().url() << "\n"
      << "resident:    "
      << (b->residency().device().empty()
              ? "no"
              : absl::StrCat(b->residency().device(), ", ", HumanBytes(b->residency().bytes()), ", loaded in ",
                             b->residency().load_seconds(), " s", b->residency().pinned() ? ", pinned" : "",
                             b->residency().users() > 0 ? absl::StrCat(", in use by ", b->residency().users()) : ""))
      << "\n"
      << "last used:   " << (b->residency().has_last_used_at() ? Timestamp(b->residency().last_used_at().seconds()) : "never")
      << (b->residency().evictions() > 0 ? absl::StrCat(", evictions since start: ", b->residency().evictions()) : "")
      << "\n";
  return absl::OkStatus();
}

absl::Status ReadImages(const std::vector<std::string>& paths, google::protobuf::RepeatedPtrField<v1::ImageInput>* out) {
  for (const std::string& path : paths) {
    auto bytes = core::ReadFile(path);
    if (!bytes.ok()) return bytes.status();
    out->Add()->set_encoded(std::move(*bytes));
  }
  return absl::OkStatus();
}

struct PredictOptions {
  std::string backbone;
  std::vector<std::string> models;
  int top_k = 0;
  std::string block;
  std::vector<std::string> images;
  std::string dataset, split = "val", output;
};

// graft predict --model M --dataset D [-o FILE.csv|.jsonl]: every image's
// top-k, written as it streams (to a temporary renamed at the end).
absl::Status PredictDataset(GraftClient& client, const PredictOptions& o, std::ostream& out) {
  if (o.models.size() != 1 || !o.backbone.empty() || !o.images.empty()) {
    return absl::InvalidArgumentError("--dataset takes exactly one --model and no image files");
  }
  const bool jsonl = o.output.size() >= 6 && o.output.compare(o.output.size() - 6, 6, ".jsonl") == 0;
  const bool csv = o.output.size() >= 4 && o.output.compare(o.output.size() - 4, 4, ".csv") == 0;
  if (!o.output.empty() && !jsonl && !csv) return absl::InvalidArgumentError("-o must end in .csv or .jsonl");
  v1::PredictDatasetRequest request;
  request.set_model(o.models[0]);
  request.set_dataset(o.dataset);
  request.set_split(SplitOf(o.split));
  if (o.top_k != 0) request.set_top_k(o.top_k);
  const std::string tmp = o.output + ".part";
  std::ofstream file;
  if (!o.output.empty()) {
    file.open(tmp, std::ios::binary | std::ios::trunc);
    if (!file) return absl::UnavailableError(absl::StrCat("cannot write '", tmp, "'"));
  }
  std::ostream& sink = o.output.empty() ? out : file;
  bool header = false;
  int64_t rows = 0, right = 0;
  const bool tty = StderrIsTty() && !o.output.empty();
  absl::Status s = client.PredictDataset(request, [&](const v1::PredictDatasetResponse& batch) {
    for (const v1::DatasetPrediction& p : batch.predictions()) {
      if (jsonl) {
        sink << ToJsonLine(p) << "\n";
      } else {
        if (!header) {
          sink << "file,true_label,true_index";
          for (int j = 1; j <= p.top_size(); ++j) sink << ",label_" << j << ",probability_" << j;
          sink << "\n";
          header = true;
        }
        sink << CsvField(p.file()) << "," << CsvField(p.true_label()) << "," << p.true_index();
        for (const auto& c : p.top()) sink << "," << CsvField(c.label()) << "," << c.probability();
        sink << "\n";
      }
      ++rows;
      right += p.top_size() > 0 && p.top(0).index() == p.true_index();
    }
    if (tty && batch.images_total() > 0) {
      std::cerr << "\r" << Bar(static_cast<double>(batch.images_done()) / batch.images_total(), 30) << " "
                << batch.images_done() << "/" << batch.images_total() << std::flush;
    }
    return static_cast<bool>(sink);
  });
  if (tty) std::cerr << "\n";
  if (!o.output.empty()) {
    file.close();
    if (s.ok() && !file) s = absl::UnavailableError(absl::StrCat("writing '", tmp, "' failed"));
    std::error_code ec;
    if (s.ok()) {
      std::filesystem::rename(tmp, o.output, ec);
      if (ec) s = absl::UnavailableError(absl::StrCat("cannot rename '", tmp, "' to '", o.output, "': ", ec.message()));
    }
    if (!s.ok()) std::filesystem::remove(tmp, ec);
  }
  if (!s.ok()) return s;
  if (!o.output.empty()) {
    out << "wrote " << rows << " predictions to " << o.output << " (top-1 right on " << right << ")\n";
  }
  return absl::OkStatus();
}

absl::Status Predict(GraftClient& client, const Globals& g, const PredictOptions& o, std::ostream& out) {
  if (!o.dataset.empty()) return PredictDataset(client, o, out);
  if (o.backbone.empty() == o.models.empty()) return absl::InvalidArgumentError("give --backbone or --model");
  if (o.images.empty()) return absl::InvalidArgumentError("give image files (or --dataset)");
  v1::PredictRequest request;
  request.set_backbone(o.backbone);
  for (const auto& m : o.models) request.add_models(m);
  if (o.top_k != 0) request.set_top_k(o.top_k);
  if (auto s = ReadImages(o.images, request.mutable_images()); !s.ok()) return s;
  auto r = client.Predict(request);
  if (!r.ok()) return r.status();
  if (g.json) {
    out << ToJson(*r) << "\n";
    return absl::OkStatus();
  }
  for (const auto& result : r->results()) {
    if (r->results_size() > 1) out << "model " << result.model() << "\n";
    for (const auto& p : result.predictions()) {
      out << o.images[static_cast<size_t>(p.image_index())];
      // A recorded answer names its record, for `graft feedback ID LABEL`.
      if (p.recorded()) out << "  (recorded as " << p.prediction_id() << ")";
      out << "\n";
      int rank = 1;
      for (const auto& c : p.top()) {
        out << "  " << std::right << std::setw(2) << rank++ << "  " << std::left << std::setw(32) << c.label()
            << std::right << std::setw(5) << c.index() << "  " << std::fixed << std::setprecision(4) << c.probability()
            << "\n";
      }
    }
  }
  const auto& t = r->timing();
  out << std::fixed << std::setprecision(1) << "server: decode " << t.decode_us() / 1000.0 << " ms, queue "
      << t.queue_us() / 1000.0 << " ms, compute " << t.compute_us() / 1000.0 << " ms\n";
  return absl::OkStatus();
}

absl::Status Embed(GraftClient& client, const Globals& g, const PredictOptions& o, std::ostream& out) {
  if (o.backbone.empty() == o.models.empty()) return absl::InvalidArgumentError("give --backbone or --model");
  v1::EmbedRequest request;
  request.set_backbone(o.backbone);
  if (!o.models.empty()) request.set_model(o.models.front());
  request.set_block(o.block);
  if (auto s = ReadImages(o.images, request.mutable_images()); !s.ok()) return s;
  auto r = client.Embed(request);
  if (!r.ok()) return r.status();
  if (g.json) {
    out << ToJson(*r) << "\n";
    return absl::OkStatus();
  }
  for (const auto& e : r->embeddings()) {
    out << o.images[static_cast<size_t>(e.image_index())] << "  dim " << r->dim() << "  [";
    for (int i = 0; i < std::min(6, e.values_size()); ++i) out << (i ? ", " : "") << std::setprecision(4) << e.values(i);
    out << (e.values_size() > 6 ? ", ...]" : "]") << "\n";
  }
  return absl::OkStatus();
}

absl::Status Pull(GraftClient& client, const Globals& g, const std::string& name, std::ostream& out) {
  std::ostream& err = std::cerr;
  const bool tty = StderrIsTty();
  auto r = client.PullBackbone(name, [&](const v1::PullBackboneProgress& p) {
    if (!tty || p.bytes_total() <= 0) return;
    err << "\r" << Bar(static_cast<double>(p.bytes_done()) / p.bytes_total(), 30) << " "
        << HumanBytes(p.bytes_done()) << " / " << HumanBytes(p.bytes_total()) << "   " << std::flush;
  });
  if (tty) err << "\n";
  if (!r.ok()) return r.status();
  if (g.json) {
    out << ToJson(*r) << "\n";
  } else {
    out << r->name() << ": weights verified and resident on " << r->residency().device() << " ("
        << r->weights().path() << ")\n";
  }
  return absl::OkStatus();
}

struct RegisterOptions {
  std::string name, path, interpolation;
  int64_t feature_dim = 0;
  int input_size = 0, resize_size = 0;
  std::vector<float> mean, std;
  bool server_path = false;
};

absl::Status Register(GraftClient& client, const Globals& g, const RegisterOptions& o, std::ostream& out) {
  v1::RegisterBackboneRequest r;
  r.set_name(o.name);
  if (o.server_path) {
    r.set_torchscript_path(o.path);  // graftd reads it, under its --backbone_import_dir
  } else {
    auto bytes = core::ReadFile(o.path);
    if (!bytes.ok()) return bytes.status();
    r.set_torchscript(std::move(*bytes));
  }
  r.set_feature_dim(static_cast<int32_t>(o.feature_dim));
  auto* p = r.mutable_preprocessing();
  p->set_height(o.input_size);
  p->set_width(o.input_size);
  p->set_resize_size(o.resize_size);
  p->set_interpolation(o.interpolation);
  for (float m : o.mean) p->add_mean(m);
  for (float s : o.std) p->add_std(s);
  auto b = client.RegisterBackbone(r);
  if (!b.ok()) return b.status();
  if (g.json) {
    out << ToJson(*b) << "\n";
  } else {
    out << b->name() << ": registered, " << b->parameter_count() << " parameters, " << b->feature_dim()
        << " features, input " << b->preprocessing().height() << "x" << b->preprocessing().width() << ", resident on "
        << b->residency().device() << "\n";
  }
  return absl::OkStatus();
}

absl::Status Health(GraftClient& client, const Globals& g, std::ostream& out) {
  auto r = client.Health();
  if (!r.ok()) return r.status();
  if (g.json) {
    out << ToJson(*r) << "\n";
  } else {
    out << ::grpc::health::v1::HealthCheckResponse::ServingStatus_Name(r->status()) << "\n";
  }
  if (r->status() != ::grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::UnavailableError(absl::StrCat("graftd at ", client.target(), " is not serving"));
  }
  return absl::OkStatus();
}

}  // namespace

void AddBackboneCommands(CLI::App& app, const Globals& g, std::ostream& out, Action* action) {
  auto* backbones = app.add_subcommand(
      "backbones", "list the backbones graftd knows (pull NAME: fetch weights; register/unregister: custom ones)");
  auto pull_name = std::make_shared<std::string>();
  auto* pull = backbones->add_subcommand("pull", "have graftd download, verify and load a backbone's official weights");
  pull->add_option("name", *pull_name, "name or alias")->required();
  pull->callback([&g, &out, action, pull_name]() {
    *action = [&g, &out, pull_name](GraftClient& c) { return Pull(c, g, *pull_name, out); };
  });
  auto ro = std::make_shared<RegisterOptions>();
  auto* reg = backbones->add_subcommand("register", "register a TorchScript file as a custom backbone");
  reg->add_option("name", ro->name, "the new backbone's name")->required();
  reg->add_option("torchscript", ro->path, "TorchScript file (torch.jit.script/trace); its bytes are sent to graftd")
      ->required();
  reg->add_flag("--server_path", ro->server_path,
                "the file is on graftd's machine, under its --backbone_import_dir: send the path, not the bytes");
  reg->add_option("--feature_dim", ro->feature_dim, "features per image the module returns ([N, D] or [N, D, h, w])")
      ->required();
  reg->add_option("--input_size", ro->input_size, "square input side (default 224)");
  reg->add_option("--resize_size", ro->resize_size, "shorter side before the centre crop (default input * 256/224)");
  reg->add_option("--mean", ro->mean, "per-channel mean, 3 values (default ImageNet's)")->expected(3)->delimiter(',');
  reg->add_option("--std", ro->std, "per-channel std, 3 values (default ImageNet's)")->expected(3)->delimiter(',');
  reg->add_option("--interpolation", ro->interpolation, "bilinear (default) or bicubic");
  reg->callback([&g, &out, action, ro]() {
    *action = [&g, &out, ro](GraftClient& c) { return Register(c, g, *ro, out); };
  });
  auto unregister_name = std::make_shared<std::string>();
  auto* unreg = backbones->add_subcommand("unregister", "forget a custom backbone (no model or job may use it)");
  unreg->add_option("name", *unregister_name, "a custom backbone")->required();
  unreg->callback([&out, action, unregister_name]() {
    *action = [&out, unregister_name](GraftClient& c) {
      absl::Status s = c.UnregisterBackbone(*unregister_name);
      if (s.ok()) out << *unregister_name << ": unregistered\n";
      return s;
    };
  });
  // Residency (admin): load, unload, pin [--off].
  auto load_name = std::make_shared<std::string>();
  auto* load = backbones->add_subcommand("load", "make a backbone resident now (evicting idle ones under the budget)");
  load->add_option("name", *load_name, "name or alias")->required();
  load->callback([&g, &out, action, load_name]() {
    *action = [&g, &out, load_name](GraftClient& c) { return ShowResidency(c.LoadBackbone(*load_name), g, out); };
  });
  auto unload_name = std::make_shared<std::string>();
  auto* unload = backbones->add_subcommand("unload", "evict a backbone now (and unpin it); it loads again at its next use");
  unload->add_option("name", *unload_name, "name or alias")->required();
  unload->callback([&g, &out, action, unload_name]() {
    *action = [&g, &out, unload_name](GraftClient& c) { return ShowResidency(c.UnloadBackbone(*unload_name), g, out); };
  });
  auto pin_name = std::make_shared<std::string>();
  auto pin_off = std::make_shared<bool>(false);
  auto* pin = backbones->add_subcommand("pin", "keep a backbone resident, never evicted (--off: evictable again)");
  pin->add_option("name", *pin_name, "name or alias")->required();
  pin->add_flag("--off", *pin_off, "unpin");
  pin->callback([&g, &out, action, pin_name, pin_off]() {
    *action = [&g, &out, pin_name, pin_off](GraftClient& c) {
      return ShowResidency(c.PinBackbone(*pin_name, !*pin_off), g, out);
    };
  });
  backbones->callback([&g, &out, action, pull, reg, unreg, load, unload, pin]() {
    if (pull->parsed() || reg->parsed() || unreg->parsed() || load->parsed() || unload->parsed() || pin->parsed()) return;
    *action = [&g, &out](GraftClient& c) { return Backbones(c, g, out); };
  });
  auto name = std::make_shared<std::string>();
  auto* backbone = app.add_subcommand("backbone", "show one backbone");
  backbone->add_option("name", *name, "name or alias")->required();
  backbone->callback([&g, &out, action, name]() {
    *action = [&g, &out, name](GraftClient& c) { return Backbone(c, g, *name, out); };
  });

  auto po = std::make_shared<PredictOptions>();
  auto* predict = app.add_subcommand("predict", "classify images with a pretrained backbone or fine-tuned models");
  predict->add_option("--backbone,-b", po->backbone, "backbone name or alias (its ImageNet head)");
  predict->add_option("--model,-m", po->models, "model id, NAME, NAME:VERSION or NAME@ALIAS (repeat for several models of one backbone)")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  predict->add_option("--top_k,-k", po->top_k, "classes per image (default 5, or fewer classes)");
  predict->add_option("images", po->images, "image files")->check(CLI::ExistingFile);
  predict->add_option("--dataset,-d", po->dataset,
                      "instead of image files: every image of a stored dataset (one --model), streamed");
  predict->add_option("--split", po->split, "with --dataset: val (default), train or all")
      ->check(CLI::IsMember({"val", "train", "all"}));
  predict->add_option("--output,-o", po->output, "with --dataset: FILE.csv or FILE.jsonl (default: CSV on stdout)");
  predict->callback([&g, &out, action, po]() {
    *action = [&g, &out, po](GraftClient& c) { return Predict(c, g, *po, out); };
  });

  auto eo = std::make_shared<PredictOptions>();
  auto* embed = app.add_subcommand("embed", "pooled backbone features per image");
  embed->add_option("--backbone,-b", eo->backbone, "backbone name or alias");
  embed->add_option("--model,-m", eo->models, "a model id: its own (possibly fine-tuned) backbone")
      ->expected(1)
      ->allow_extra_args(false);
  embed->add_option("--block", eo->block, "a block name (default: the last)");
  embed->add_option("images", eo->images, "image files")->required()->check(CLI::ExistingFile);
  embed->callback([&g, &out, action, eo]() {
    *action = [&g, &out, eo](GraftClient& c) { return Embed(c, g, *eo, out); };
  });

  app.add_subcommand("health", "ask graftd whether it is serving")->callback([&g, &out, action]() {
    *action = [&g, &out](GraftClient& c) { return Health(c, g, out); };
  });
}

}  // namespace graft::client
