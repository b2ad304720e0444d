// The store's format stamp (white-box: the meta family written with RocksDB directly).
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "db_options.h"
#include "gsau/state/state_store.h"
#include "keys.h"
#include "temp_dir.h"

namespace gsau::state {
namespace {

StateOptions Small(const std::string& path) {
  StateOptions o;
  o.path = path;
  o.block_cache_bytes = 8 << 20;
  o.write_buffer_bytes = 1 << 20;
  return o;
}

// Reads, and with `write` non-empty first sets, meta's "format" with RocksDB itself.
std::string Format(const std::string& path, const std::string& write = "") {
  const DbSetup setup = MakeDbSetup(Small(path));
  rocksdb::DB* raw = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  EXPECT_TRUE(rocksdb::DB::Open(setup.db, path, setup.families, &handles, &raw).ok());
  if (raw == nullptr) return "";
  std::unique_ptr<rocksdb::DB> db(raw);
  if (!write.empty()) {
    EXPECT_TRUE(db->Put(rocksdb::WriteOptions(), handles[keys::kMeta], keys::kFormatKey, write).ok());
  }
  std::string value;
  EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), handles[keys::kMeta], keys::kFormatKey, &value).ok());
  for (auto* h : handles) EXPECT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  EXPECT_TRUE(db->Close().ok());
  return value;
}

TEST(StateFormatTest, AStoreOfTheFirstFormatIsStampedWithTheSecondWhenOpenedForWriting) {
  gsau::testing::TempDir dir;
  const std::string path = dir.File("db");
  const ClickEvent e{"u", "i", 1, "click"};
  {
    auto store = StateStore::Open(Small(path));
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->ApplyBatch(std::span(&e, 1), {}).ok());
  }
  EXPECT_EQ(Format(path), "2");
  EXPECT_EQ(Format(path, "1"), "1");  // as the first format left it
  {
    StateOptions ro = Small(path);
    ro.read_only = true;
    auto store = StateStore::Open(ro);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->Counts().events, 1u);
  }
  EXPECT_EQ(Format(path), "1") << "a read-only open writes nothing";
  {
    auto store = StateStore::Open(Small(path));
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->Counts().events, 1u);
  }
  EXPECT_EQ(Format(path), "2") << "an older binary must refuse the store, not misread its change feed";
  Format(path, "3");
  auto newer = StateStore::Open(Small(path));
  ASSERT_FALSE(newer.ok());
  EXPECT_EQ(newer.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(newer.status().message().find("unknown store format 3"), std::string::npos) << newer.status();
}

}  // namespace
}  // namespace gsau::state
