#include "core/serve/evaluation_report.h"

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "core/util/json.h"
#include "core/util/torch_status.h"

namespace graft::core {

nlohmann::json EvaluationReportToJson(const EvaluationReport& r) {
  nlohmann::json classes = nlohmann::json::array();
  for (const ClassReport& k : r.classes) {
    classes.push_back({{"name", k.name},
                       {"precision", k.precision},
                       {"recall", k.recall},
                       {"f1", k.f1},
                       {"support", k.support},
                       {"predicted", k.predicted}});
  }
  nlohmann::json confused = nlohmann::json::array();
  for (const ConfusedPair& p : r.most_confused) confused.push_back({p.true_class, p.predicted_class, p.count});
  nlohmann::json bins = nlohmann::json::array();
  for (const ReliabilityBin& b : r.reliability) {
    bins.push_back({{"lower", b.lower}, {"upper", b.upper}, {"count", b.count}, {"confidence", b.confidence},
                    {"accuracy", b.accuracy}});
  }
  nlohmann::json hard = nlohmann::json::array();
  for (const HardExample& e : r.highest_loss) {
    hard.push_back({{"file", e.file},
                    {"true_class", e.true_class},
                    {"predicted_class", e.predicted_class},
                    {"predicted_probability", e.predicted_probability},
                    {"true_probability", e.true_probability},
                    {"loss", e.loss}});
    if (!e.thumbnail.empty()) hard.back()["thumbnail"] = absl::Base64Escape(e.thumbnail);
  }
  return {{"model", r.model},
          {"dataset", r.dataset},
          {"split", r.split},
          {"images", r.images},
          {"accuracy", r.accuracy},
          {"top5_accuracy", r.top5_accuracy},
          {"log_loss", r.log_loss},
          {"macro_f1", r.macro_f1},
          {"weighted_f1", r.weighted_f1},
          {"expected_calibration_error", r.expected_calibration_error},
          {"classes", classes},
          {"confusion", r.confusion},
          {"most_confused", confused},
          {"reliability", bins},
          {"highest_loss", hard},
          {"computed_at", r.computed_at},
          {"seconds", r.seconds}};
}

absl::StatusOr<EvaluationReport> EvaluationReportFromJson(const nlohmann::json& j) {
  return GuardExceptions(absl::StatusCode::kDataLoss, "reading an evaluation report",
                         [&]() -> absl::StatusOr<EvaluationReport> {
                           EvaluationReport r;
                           r.model = j.at("model").get<std::string>();
                           r.dataset = j.at("dataset").get<std::string>();
                           r.split = j.at("split").get<std::string>();
                           r.images = JsonInt<int64_t>(j.at("images"));
                           r.accuracy = j.at("accuracy").get<double>();
                           r.top5_accuracy = j.at("top5_accuracy").get<double>();
                           r.log_loss = j.at("log_loss").get<double>();
                           r.macro_f1 = j.at("macro_f1").get<double>();
                           r.weighted_f1 = j.at("weighted_f1").get<double>();
                           r.expected_calibration_error = j.at("expected_calibration_error").get<double>();
                           for (const auto& k : j.at("classes")) {
                             r.classes.push_back({k.at("name").get<std::string>(), k.at("precision").get<double>(),
                                                  k.at("recall").get<double>(), k.at("f1").get<double>(),
                                                  JsonInt<int64_t>(k.at("support")),
                                                  JsonInt<int64_t>(k.at("predicted"))});
                           }
                           for (const auto& v : j.at("confusion")) r.confusion.push_back(JsonInt<int64_t>(v));
                           const size_t c = r.classes.size();
                           if (r.confusion.size() != c * c &&
                               !(r.confusion.empty() && c > static_cast<size_t>(kMaxDenseConfusionClasses))) {
                             return absl::DataLossError("the confusion matrix does not match the classes");
                           }
                           for (const auto& p : j.at("most_confused")) {
                             const int t = JsonInt<int>(p.at(0)), q = JsonInt<int>(p.at(1));
                             if (t < 0 || q < 0 || static_cast<size_t>(t) >= c || static_cast<size_t>(q) >= c) {
                               return absl::DataLossError("a confused pair names no class");
                             }
                             r.most_confused.push_back({t, q, JsonInt<int64_t>(p.at(2))});
                           }
                           for (const auto& b : j.at("reliability")) {
                             r.reliability.push_back({b.at("lower").get<double>(), b.at("upper").get<double>(),
                                                      JsonInt<int64_t>(b.at("count")),
                                                      b.at("confidence").get<double>(),
                                                      b.at("accuracy").get<double>()});
                           }
                           for (const auto& e : j.at("highest_loss")) {
                             HardExample h{e.at("file").get<std::string>(), JsonInt<int>(e.at("true_class")),
                                           JsonInt<int>(e.at("predicted_class")),
                                           e.at("predicted_probability").get<double>(),
                                           e.at("true_probability").get<double>(), e.at("loss").get<double>(), {}};
                             if (h.true_class < 0 || h.predicted_class < 0 || static_cast<size_t>(h.true_class) >= c ||
                                 static_cast<size_t>(h.predicted_class) >= c) {
                               return absl::DataLossError("a highest-loss image names no class");
                             }
                             if (const auto t = e.find("thumbnail"); t != e.end() &&
                                 !absl::Base64Unescape(t->get<std::string>(), &h.thumbnail)) {
                               return absl::DataLossError("a highest-loss image's thumbnail is not base64");
                             }
                             r.highest_loss.push_back(std::move(h));
                           }
                           r.computed_at = j.value("computed_at", 0.0);
                           r.seconds = j.value("seconds", 0.0);
                           return r;
                         });
}

}  // namespace graft::core
