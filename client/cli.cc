#include "client/cli.h"

#include <CLI/CLI.hpp>
#include <google/protobuf/util/json_util.h>

#include <iomanip>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/client.h"
#include "core/util/files.h"

namespace graft::client {
namespace {

struct Globals {
  std::string server = "localhost:50051";
  bool json = false;
};

std::string ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = false;  // lowerCamelCase, the proto JSON mapping
  std::string s;
  (void)google::protobuf::util::MessageToJsonString(m, &s, options);
  return s;
}

std::string HumanBytes(int64_t bytes) {
  if (bytes <= 0) return "-";
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  std::ostringstream s;
  s << std::fixed << std::setprecision(u == 0 ? 0 : 1) << v << " " << units[u];
  return s.str();
}

std::string HumanCount(int64_t n) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << (n / 1e6) << "M";
  return s.str();
}

absl::Status Backbones(GraftClient& client, const Globals& g, std::ostream& out) {
  auto r = client.ListBackbones();
  if (!r.ok()) return r.status();
  if (g.json) {
    out << ToJson(*r) << "\n";
    return absl::OkStatus();
  }
  out << std::left << std::setw(15) << "NAME" << std::setw(26) << "ALIASES" << std::setw(14) << "FAMILY"
      << std::setw(9) << "PARAMS" << std::setw(9) << "FEATURES" << std::setw(9) << "WEIGHTS" << "RESIDENT\n";
  for (const auto& b : r->backbones()) {
    const std::string resident =
        b.residency().device().empty() ? "-" : absl::StrCat(b.residency().device(), " ", HumanBytes(b.residency().bytes()));
    out << std::left << std::setw(15) << b.name() << std::setw(26) << absl::StrJoin(b.aliases(), ",") << std::setw(14)
        << b.family() << std::setw(9) << HumanCount(b.parameter_count()) << std::setw(9) << b.feature_dim()
        << std::setw(9) << (b.weights().present() ? "yes" : (b.weights().error().empty() ? "no" : "error"))
        << resident << "\n";
  }
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
      << (b->residency().device().empty() ? "no"
                                          : absl::StrCat(b->residency().device(), ", ", HumanBytes(b->residency().bytes()),
                                                         ", loaded in ", b->residency().load_seconds(), " s"))
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

absl::Status Predict(GraftClient& client, const Globals& g, const std::string& backbone, int top_k,
                     const std::vector<std::string>& images, std::ostream& out) {
  v1::PredictRequest request;
  request.set_backbone(backbone);
  request.set_top_k(top_k);
  if (auto s = ReadImages(images, request.mutable_images()); !s.ok()) return s;
  auto r = client.Predict(request);
  if (!r.ok()) return r.status();
  if (g.json) {
    out << ToJson(*r) << "\n";
    return absl::OkStatus();
  }
  for (const auto& result : r->results()) {
    for (const auto& p : result.predictions()) {
      out << images[p.image_index()] << "\n";
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

absl::Status Embed(GraftClient& client, const Globals& g, const std::string& backbone, const std::string& block,
                   const std::vector<std::string>& images, std::ostream& out) {
  v1::EmbedRequest request;
  request.set_backbone(backbone);
  request.set_block(block);
  if (auto s = ReadImages(images, request.mutable_images()); !s.ok()) return s;
  auto r = client.Embed(request);
  if (!r.ok()) return r.status();
  if (g.json) {
    out << ToJson(*r) << "\n";
    return absl::OkStatus();
  }
  for (const auto& e : r->embeddings()) {
    out << images[e.image_index()] << "  dim " << r->dim() << "  [";
    for (int i = 0; i < std::min(6, e.values_size()); ++i) out << (i ? ", " : "") << std::setprecision(4) << e.values(i);
    out << (e.values_size() > 6 ? ", ...]" : "]") << "\n";
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

int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"graft: the command-line client of the graft transfer-learning service"};
  app.require_subcommand(1);
  Globals g;
  app.add_option("--server", g.server, "graftd address")->capture_default_str();
  app.add_flag("--json", g.json, "machine-readable output (one JSON document, proto JSON field names)");

  auto* backbones = app.add_subcommand("backbones", "list the backbones graftd knows");
  std::string name;
  auto* backbone = app.add_subcommand("backbone", "show one backbone");
  backbone->add_option("name", name, "name or alias")->required();

  std::string model_backbone;
  int top_k = 5;
  std::vector<std::string> images;
  auto* predict = app.add_subcommand("predict", "classify images with a pretrained backbone");
  predict->add_option("--backbone,-b", model_backbone, "backbone name or alias")->required();
  predict->add_option("--top_k,-k", top_k, "classes per image")->capture_default_str();
  predict->add_option("images", images, "image files")->required()->check(CLI::ExistingFile);

  std::string block;
  auto* embed = app.add_subcommand("embed", "pooled backbone features per image");
  embed->add_option("--backbone,-b", model_backbone, "backbone name or alias")->required();
  embed->add_option("--block", block, "a block name (default: the last)");
  embed->add_option("images", images, "image files")->required()->check(CLI::ExistingFile);

  auto* health = app.add_subcommand("health", "ask graftd whether it is serving");

  // Globals may come after the subcommand too.
  for (auto* sub : {backbones, backbone, predict, embed, health}) {
    sub->fallthrough();
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    out << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      out << app.help(e.get_name().empty() ? "" : e.get_name());
      return 0;
    }
    err << "graft: " << e.what() << "\n";
    return 2;
  }

  GraftClient client(g.server);
  absl::Status status;
  if (*backbones) status = Backbones(client, g, out);
  if (*backbone) status = Backbone(client, g, name, out);
  if (*predict) status = Predict(client, g, model_backbone, top_k, images, out);
  if (*embed) status = Embed(client, g, model_backbone, block, images, out);
  if (*health) status = Health(client, g, out);
  if (!status.ok()) {
    err << "graft: " << absl::StatusCodeToString(status.code()) << ": " << status.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace graft::client
