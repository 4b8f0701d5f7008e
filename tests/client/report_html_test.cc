// The HTML report's page from a model: what a reader sees, and that nothing
// a client named (classes, files) can become markup.
#include "client/report_html.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <regex>
#include <string>

namespace graft::client {
namespace {

int Count(const std::string& haystack, const std::string& needle) {
  int n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + needle.size())) ++n;
  return n;
}

v1::Model SampleModel() {
  v1::Model m;
  m.set_id("model-abc");
  m.set_name("ants");
  m.set_version(2);
  m.set_backbone("mobilenet_v2");
  const std::vector<std::string> classes = {"ants", "<script>alert(1)</script>", "bees & wasps"};
  for (const auto& c : classes) m.add_class_names(c);
  // Two stages: epochs 1-3 train the head, 4-5 the top blocks; epoch 2 and 5 restored.
  for (int e = 1; e <= 5; ++e) {
    auto* h = m.add_history();
    h->set_epoch(e);
    h->set_stage(e <= 3 ? 1 : 2);  // 1-based
    h->set_train_loss(1.0 / e);
    h->set_val_loss(e == 4 ? std::nan("") : 1.2 / e);
    h->set_train_accuracy(0.5 + 0.08 * e);
    h->set_val_accuracy(0.45 + 0.07 * e);
  }
  m.add_restored_epochs(3);
  m.add_restored_epochs(5);
  auto* r = m.mutable_report();
  r->set_dataset("insects");
  r->set_split("val");
  r->set_images(12);
  r->set_accuracy(0.75);
  for (const auto& c : classes) r->add_classes()->set_name(c);
  const int confusion[9] = {4, 0, 1, 1, 3, 0, 0, 1, 2};
  for (int v : confusion) r->add_confusion(v);
  auto* bin = r->add_reliability();
  bin->set_lower(0.6);
  bin->set_upper(0.8);
  bin->set_count(12);
  bin->set_accuracy(0.75);
  bin->set_confidence(0.7);
  auto* hard = r->add_highest_loss();
  hard->set_file("val/ants/\"><img src=x onerror=alert(1)>.jpg");
  hard->set_true_class(0);
  hard->set_predicted_class(2);
  hard->set_thumbnail(std::string("\xff\xd8\xff\xe0 not really a jpeg", 22));
  return m;
}

TEST(ReportHtml, ShowsEveryEpochStageAndRestoredEpochOnBothCharts) {
  const std::string html = RenderReportHtml(SampleModel());
  // 4 series x 5 epochs, less the NaN val loss of epoch 4 (a diverged epoch has no point).
  EXPECT_EQ(Count(html, "class=\"point\""), 19);
  EXPECT_EQ(Count(html, "data-series=\"val_accuracy\""), 1);
  EXPECT_EQ(Count(html, "class=\"stage-boundary\" data-stage=\"2\""), 2);  // loss and accuracy charts
  EXPECT_EQ(Count(html, "class=\"restored\" data-epoch=\"3\""), 2);
  EXPECT_EQ(Count(html, "class=\"restored\" data-epoch=\"5\""), 2);
  EXPECT_EQ(html.find("nan"), std::string::npos) << "a NaN reached the SVG";
  EXPECT_NE(html.find("<h1>ants:2 (model-abc)</h1>"), std::string::npos);
}

TEST(ReportHtml, ConfusionCellsHoldTheReportsCounts) {
  const v1::Model m = SampleModel();
  const std::string html = RenderReportHtml(m);
  EXPECT_EQ(Count(html, "<td class=\"cell"), 9);
  const std::regex cell(R"re(data-true="(\d)" data-predicted="(\d)"[^>]*>(\d+)</td>)re");
  int seen = 0;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), cell); it != std::sregex_iterator(); ++it, ++seen) {
    const int t = std::stoi((*it)[1]), q = std::stoi((*it)[2]);
    EXPECT_EQ(std::stoll((*it)[3]), m.report().confusion(t * 3 + q)) << t << "," << q;
  }
  EXPECT_EQ(seen, 9);
  EXPECT_EQ(Count(html, "class=\"rel-bar\" data-count=\"12\""), 1);
}

TEST(ReportHtml, ClientNamesAreEscapedAndNothingIsFetched) {
  const std::string html = RenderReportHtml(SampleModel());
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<img src=x"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("bees &amp; wasps"), std::string::npos);
  EXPECT_NE(html.find("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;.jpg"), std::string::npos);
  EXPECT_NE(html.find("default-src 'none'; img-src data:"), std::string::npos);
  // The only URLs: the SVG namespace (not fetched) and data: thumbnails.
  const std::regex url(R"re((https?|ftp|wss?)://[^"' ]*)re");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), url); it != std::sregex_iterator(); ++it) {
    EXPECT_EQ((*it)[0].str(), "http://www.w3.org/2000/svg");
  }
  EXPECT_EQ(Count(html, "src=\"data:image/jpeg;base64,"), 1);
}

TEST(ReportHtml, ManyClassesShowTheFiftyMostInvolvedInErrors) {
  // 60 classes, 10 images each, all right except class 7 taken for 42 (and a
  // few others for their neighbour): the page must not hold 3600 cells.
  constexpr int kC = 60;
  v1::Model m;
  m.set_id("model-many");
  auto* r = m.mutable_report();
  for (int k = 0; k < kC; ++k) r->add_classes()->set_name("class" + std::to_string(k));
  std::vector<int64_t> confusion(kC * kC, 0);
  for (int k = 0; k < kC; ++k) confusion[k * kC + k] = 10;
  confusion[7 * kC + 7] = 2;
  confusion[7 * kC + 42] = 8;
  for (int k = 0; k < 30; ++k) {
    confusion[(2 * k) * kC + 2 * k] -= 1;
    confusion[(2 * k) * kC + 2 * k + 1] += 1;
  }
  for (int64_t v : confusion) r->add_confusion(v);
  const std::vector<int> shown = ConfusionClassesShown(*r);
  ASSERT_EQ(shown.size(), static_cast<size_t>(kMaxConfusionClasses));
  EXPECT_TRUE(std::is_sorted(shown.begin(), shown.end()));
  EXPECT_NE(std::find(shown.begin(), shown.end(), 7), shown.end());
  EXPECT_NE(std::find(shown.begin(), shown.end(), 42), shown.end());
  const std::string html = RenderReportHtml(m);
  EXPECT_EQ(Count(html, "<td class=\"cell"), kMaxConfusionClasses * kMaxConfusionClasses);
  EXPECT_NE(html.find("The 50 of 60 classes most involved in errors"), std::string::npos);
  EXPECT_NE(html.find("data-true=\"7\" data-predicted=\"42\""), std::string::npos);
  // A small model shows every class and no note.
  EXPECT_EQ(ConfusionClassesShown(SampleModel().report()).size(), 3u);
  EXPECT_EQ(RenderReportHtml(SampleModel()).find("confusion-note"), std::string::npos);
}

TEST(ReportHtml, AModelWithoutHistoryOrReportSaysSo) {
  v1::Model m;
  m.set_id("model-old");
  const std::string html = RenderReportHtml(m);
  EXPECT_NE(html.find("No learning curves were recorded"), std::string::npos);
  EXPECT_NE(html.find("has no evaluation report"), std::string::npos);
  EXPECT_EQ(Count(html, "class=\"point\""), 0);
}

TEST(ReportHtml, PrecisionSaysWhatServesAndEachChecksFigures) {
  v1::Model m = SampleModel();
  EXPECT_NE(RenderReportHtml(m).find("<p id=\"precision\">Serves with a fp32 trunk.</p>"), std::string::npos);
  m.set_precision(v1::PRECISION_BF16);
  auto* c = m.add_precision_checks();
  c->set_precision(v1::PRECISION_BF16);
  c->set_images(153);
  c->set_split("val");
  c->set_dataset("<b>hym</b>");
  c->set_top1_agreement(0.9935);
  c->set_accuracy(0.9412);
  c->set_fp32_accuracy(0.9477);
  c->set_max_probability_difference(0.026374);
  c->set_min_agreement(0.99);
  c->set_max_accuracy_drop(0.005);
  c->set_passed(true);
  const std::string html = RenderReportHtml(m);
  EXPECT_NE(html.find("Serves with a bf16 trunk (its own fine-tuned blocks and head in fp32)."), std::string::npos);
  EXPECT_NE(html.find("<td>bf16</td><td>153 val of &lt;b&gt;hym&lt;/b&gt;</td><td>0.9935</td><td>0.9412</td><td>0.9477</td>"
                      "<td>0.026374</td><td>agreement &ge; 0.9900, drop &le; 0.0050</td><td>passed</td>"),
            std::string::npos)
      << html;
}

}  // namespace
}  // namespace graft::client
