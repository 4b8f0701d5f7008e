// core::UploadSession without a server: what a transport hands it chunk by
// chunk, the limits it holds, and that nothing is staged or kept after a
// refusal. Images are made here; nothing from ../shared.

#include <gtest/gtest.h>

#include <filesystem>

#include "core/data/upload_session.h"
#include "core/util/database.h"
#include "core/util/files.h"
#include "core/util/limit_error.h"
#include "tests/testing/archive_writer.h"
#include "tests/testing/temp_dir.h"

namespace graft::core {
namespace {
namespace fs = std::filesystem;

class UploadSessionTest : public ::testing::Test {
 protected:
  void Open(UploadLimits limits) {
    auto db = Database::Open(dir_.Join("graft.db"));
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    auto store = DatasetStore::Open(*db_, dir_.Join("datasets"), limits);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void SetUp() override { Open(UploadLimits{}); }

  UploadHeader Header(UploadFormat format, const std::string& name = "pets") {
    UploadHeader h;
    h.name = name;
    h.owner = "alice";
    h.format = format;
    return h;
  }
  // Uploads in progress (each has a folder in this process's staging folder).
  size_t StagedFolders() {
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir_.Join("datasets/staging/local"))) n += e.is_directory();
    return n;
  }

  testing::TempDir dir_;
  std::unique_ptr<Database> db_;
  std::unique_ptr<DatasetStore> store_;
};

const std::string kRed = testing::EncodeImage("png", 8, 8, 0, 0, 255);
const std::string kBlue = testing::EncodeImage("png", 8, 8, 255, 0, 0);

TEST_F(UploadSessionTest, AFolderUploadInChunksBecomesADatasetAndRefusesBadFilesOneByOne) {
  auto session = UploadSession::Begin(*store_, Header(UploadFormat::kFolder));
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(StagedFolders(), 1u);
  for (int i = 0; i < 6; ++i) {
    const std::string cls = i % 2 ? "cat" : "dog";
    const std::string& png = i % 2 ? kRed : kBlue;
    // Two chunks per file: the second continues the file the first named.
    const std::string path = cls + "/" + std::to_string(i) + ".png";
    ASSERT_TRUE((*session)->Append(path, png.substr(0, 10), false).ok());
    ASSERT_TRUE((*session)->Append("", png.substr(10), true).ok());
  }
  ASSERT_TRUE((*session)->Append("../escape.png", kRed, true).ok());
  ASSERT_TRUE((*session)->Append("dog/broken.png", "not an image", true).ok());
  auto result = (*session)->Finish();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->dataset.name, "pets");
  EXPECT_EQ(result->dataset.owner, "alice");
  ASSERT_EQ(result->dataset.classes.size(), 2u);
  EXPECT_EQ(result->dataset.classes[0].name, "cat");
  EXPECT_EQ(result->dataset.classes[1].name, "dog");
  EXPECT_EQ(result->dataset.train_images + result->dataset.val_images, 6);
  ASSERT_EQ(result->rejected.size(), 2u);
  EXPECT_EQ(result->rejected[0].path, "../escape.png");
  EXPECT_NE(result->rejected[0].reason.find(".."), std::string::npos) << result->rejected[0].reason;
  EXPECT_EQ(result->rejected[1].path, "dog/broken.png");
  session->reset();
  EXPECT_EQ(StagedFolders(), 0u) << "the staging folder goes with the session";
  EXPECT_EQ(store_->List().size(), 1u);
}

TEST_F(UploadSessionTest, AFileOverThePerFileLimitIsListedWithTheFlagAndTheRestIsKept) {
  UploadLimits limits;
  limits.max_file_bytes = static_cast<int64_t>(kRed.size()) + 10;
  Open(limits);
  auto session = UploadSession::Begin(*store_, Header(UploadFormat::kFolder));
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE((*session)->Append("a/1.png", kRed, true).ok());
  ASSERT_TRUE((*session)->Append("a/2.png", kRed + std::string(100, 'x'), true).ok());
  ASSERT_TRUE((*session)->Append("b/1.png", kBlue, true).ok());
  auto result = (*session)->Finish();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->dataset.train_images + result->dataset.val_images, 2);
  ASSERT_EQ(result->rejected.size(), 1u);
  EXPECT_EQ(result->rejected[0].path, "a/2.png");
  EXPECT_NE(result->rejected[0].reason.find("--max_upload_file_bytes"), std::string::npos) << result->rejected[0].reason;
}

TEST_F(UploadSessionTest, EveryWholeUploadLimitEndsItNamingItsFlagAndKeepsNothing) {
  UploadLimits limits;
  limits.max_archive_entries = 2;
  limits.max_dataset_bytes = 3 * static_cast<int64_t>(kRed.size());
  Open(limits);
  {
    auto session = UploadSession::Begin(*store_, Header(UploadFormat::kFolder));
    ASSERT_TRUE(session.ok());
    ASSERT_TRUE((*session)->Append("a/1.png", kRed, true).ok());
    ASSERT_TRUE((*session)->Append("a/2.png", kRed, true).ok());
    const absl::Status third = (*session)->Append("a/3.png", kRed, true);
    EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(LimitFlagOf(third), "max_archive_entries") << third;
  }
  {
    auto session = UploadSession::Begin(*store_, Header(UploadFormat::kDetect));
    ASSERT_TRUE(session.ok());
    ASSERT_TRUE((*session)->Append("", kRed + kRed + kRed, false).ok());
    const absl::Status over = (*session)->Append("", "x", false);
    EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(LimitFlagOf(over), "max_dataset_bytes") << over;
  }
  UploadHeader declared = Header(UploadFormat::kDetect);
  declared.total_bytes = limits.max_dataset_bytes + 1;
  auto too_big = UploadSession::Begin(*store_, declared);
  EXPECT_EQ(LimitFlagOf(too_big.status()), "max_dataset_bytes") << too_big.status();
  declared.total_bytes = 4;
  auto session = UploadSession::Begin(*store_, declared);
  ASSERT_TRUE(session.ok());
  const absl::Status more = (*session)->Append("", "12345", false);
  EXPECT_EQ(more.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(more.message().find("header.total_bytes declared"), std::string::npos) << more;
  session->reset();
  EXPECT_TRUE(store_->List().empty());
  EXPECT_EQ(StagedFolders(), 0u);
}

TEST_F(UploadSessionTest, TheHeaderIsCheckedBeforeAnyByteIsStaged) {
  UploadHeader bad = Header(UploadFormat::kFolder, "../x");
  EXPECT_EQ(UploadSession::Begin(*store_, bad).status().code(), absl::StatusCode::kInvalidArgument);
  UploadHeader split = Header(UploadFormat::kFolder);
  split.split_fraction = 1;
  auto refused = UploadSession::Begin(*store_, split);
  EXPECT_NE(refused.status().message().find("header.split.fraction"), std::string::npos) << refused.status();
  UploadHeader negative = Header(UploadFormat::kFolder);
  negative.total_bytes = -1;
  EXPECT_EQ(UploadSession::Begin(*store_, negative).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StagedFolders(), 0u);
}

TEST_F(UploadSessionTest, ArchivesAreHeldToTheirDeclaredFormatAndAChunkWithoutAFileIsRefused) {
  const std::string zip = dir_.Join("pets.zip");
  ASSERT_TRUE(testing::WriteArchive(zip, "zip", {{"cat/1.png", kRed, ""}, {"dog/1.png", kBlue, ""}}));
  auto bytes = ReadFile(zip);
  ASSERT_TRUE(bytes.ok());
  {
    auto session = UploadSession::Begin(*store_, Header(UploadFormat::kTarGz));
    ASSERT_TRUE(session.ok());
    ASSERT_TRUE((*session)->Append("", *bytes, false).ok());
    auto result = (*session)->Finish();
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(result.status().message().find("declared UPLOAD_FORMAT_TAR_GZ but the data is a zip archive"),
              std::string::npos)
        << result.status();
  }
  auto empty = UploadSession::Begin(*store_, Header(UploadFormat::kZip));
  ASSERT_TRUE(empty.ok());
  EXPECT_NE((*empty)->Finish().status().message().find("holds no data"), std::string::npos);
  auto folder = UploadSession::Begin(*store_, Header(UploadFormat::kFolder));
  ASSERT_TRUE(folder.ok());
  EXPECT_NE((*folder)->Append("", kRed, false).message().find("must name its file"), std::string::npos);

  auto session = UploadSession::Begin(*store_, Header(UploadFormat::kZip));
  ASSERT_TRUE(session.ok());
  const size_t half = bytes->size() / 2;
  ASSERT_TRUE((*session)->Append("", bytes->substr(0, half), false).ok());
  ASSERT_TRUE((*session)->Append("", bytes->substr(half), false).ok());
  auto result = (*session)->Finish();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->dataset.train_images + result->dataset.val_images, 2);
}

TEST_F(UploadSessionTest, AClientThatGivesUpEndsTheUploadAsCancelled) {
  bool gone = false;
  auto session = UploadSession::Begin(*store_, Header(UploadFormat::kFolder), [&] { return gone; });
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE((*session)->Append("a/1.png", kRed, true).ok());
  gone = true;
  EXPECT_EQ((*session)->Append("a/2.png", kRed, true).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ((*session)->Finish().status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(store_->List().empty());
}

}  // namespace
}  // namespace graft::core
