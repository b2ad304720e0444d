// The store's format stamp (white-box: the meta family written with RocksDB directly).
#include <gtest/gtest.h>

#include <memory>
#include <tuple>
#include <vector>
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

// Writes `value` under `key` in `family` with RocksDB itself.
void PutRaw(const std::string& path, keys::Cf family, const std::string& key, const std::string& value) {
  const DbSetup setup = MakeDbSetup(Small(path));
  rocksdb::DB* raw = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  ASSERT_TRUE(rocksdb::DB::Open(setup.db, path, setup.families, &handles, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  EXPECT_TRUE(db->Put(rocksdb::WriteOptions(), handles[family], key, value).ok());
  for (auto* h : handles) EXPECT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  EXPECT_TRUE(db->Close().ok());
}

// Stored data that breaks the store's own layout is kCorruption at Open, never a read or a
// write outside memory: an id of 0xFFFFFFFF (its `id + 1` wrapped to 0 and a write landed
// outside the id table), an id far past the others (sized the table by it), a change-feed key
// shorter than its 8 bytes (read past it).
TEST(StateFormatTest, IdsAndChangeKeysOutsideTheLayoutAreCorruptionAtOpen) {
  const ClickEvent events[] = {{"u1", "i1", 1000, "click"}, {"u2", "i2", 2000, "click"}};
  const std::vector<std::tuple<keys::Cf, std::string, std::string, std::string>> cases = {
      {keys::kUserIds, "ghost", std::string("\xff\xff\xff\xff", 4), "user ids are not dense"},
      {keys::kItemIds, "ghost", std::string("\x00\x00\x00\x40", 4), "item ids are not dense"},
      {keys::kItemIds, "ghost", std::string("\x01\x00\x00\x00", 4), "item id reused"},
      {keys::kChanges, std::string(1, '\0'), "", "not 8 bytes"},
  };
  for (const auto& [family, key, value, message] : cases) {
    gsau::testing::TempDir dir;
    const std::string path = dir.File("db");
    {
      auto store = StateStore::Open(Small(path));
      ASSERT_TRUE(store.ok()) << store.status();
      ASSERT_TRUE((*store)->ApplyBatch(events, {}).ok());
    }
    PutRaw(path, family, key, value);
    auto broken = StateStore::Open(Small(path));
    ASSERT_FALSE(broken.ok()) << message;
    EXPECT_EQ(broken.status().code(), StatusCode::kCorruption) << broken.status();
    EXPECT_NE(broken.status().message().find(message), std::string::npos) << broken.status();
  }
}

}  // namespace
}  // namespace gsau::state
