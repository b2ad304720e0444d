#include "gsau/state/state_store.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <tuple>
#include <unordered_map>

#include <rocksdb/db.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>

#include "changelog.h"
#include "db_options.h"
#include "gsau/common/file.h"
#include "gsau/common/log.h"
#include "keys.h"

namespace gsau::state {
namespace {

namespace fs = std::filesystem;

Status FromRocks(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return Status::Ok();
  std::string m = std::string(context) + ": " + s.ToString();
  if (s.IsNotFound()) return Status::NotFound(std::move(m));
  if (s.IsCorruption()) return Status::Corruption(std::move(m));
  if (s.IsInvalidArgument()) return Status::InvalidArgument(std::move(m));
  if (s.IsIOError()) return Status::IoError(std::move(m));
  if (s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) return Status::Unavailable(std::move(m));
  return Status::Internal(std::move(m));
}

rocksdb::Slice S(std::string_view v) { return {v.data(), v.size()}; }
std::string_view V(const rocksdb::Slice& s) { return {s.data(), s.size()}; }

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// External id -> dense id, in shards. The writer grows it under the readers' lock, and growing
// an unordered_map past its load factor rehashes every node at once: ~0.5-1 s at 1.5-3 million
// names, a pause for every reader (and the writer). A shard's rehash moves 1/kShards of them.
// Nodes never move, so pointers to the stored names stay valid.
class IdMap {
 public:
  // Filled evenly, shards of one load factor would pass it at about the same size, and one
  // commit could rehash many of them: their load factors differ (1 down to ~0.5), which spreads
  // their rehashes over each doubling.
  IdMap() {
    for (size_t i = 0; i < kShards; ++i) {
      shards_[i].max_load_factor(1.0f - static_cast<float>(i) / static_cast<float>(2 * kShards));
    }
  }
  std::optional<uint32_t> Find(std::string_view name) const {
    const auto& shard = shards_[ShardOf(name)];
    auto it = shard.find(name);
    if (it == shard.end()) return std::nullopt;
    return it->second;
  }
  // The stored name, and whether it is new (an existing one keeps its id).
  std::pair<const std::string*, bool> Emplace(std::string name, uint32_t id) {
    auto& shard = shards_[ShardOf(name)];
    auto [it, inserted] = shard.emplace(std::move(name), id);
    return {&it->first, inserted};
  }
  void Clear() {
    for (auto& shard : shards_) shard.clear();
  }

 private:
  static constexpr size_t kShards = 64;
  // The hash's top bits: the shards' own buckets use it modulo a prime.
  static size_t ShardOf(std::string_view name) {
    return (StringHash{}(name) >> (std::numeric_limits<size_t>::digits - 6)) % kShards;
  }
  std::array<std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>>, kShards> shards_;
};
using StagedIdMap = std::unordered_map<std::string_view, uint32_t>;
// Per-id caches that grow under the readers' lock: deques, so that growing never copies what
// is there (a vector's reallocation copied every entry, tens of ms at millions).
using Names = std::deque<const std::string*>;  // into an IdMap's names (stable)
using Stats = std::deque<NodeStats>;

// Ids are stored as u32; the largest is kept free so that id + 1 (a range bound) fits.
constexpr uint64_t kMaxIds = std::numeric_limits<uint32_t>::max();
constexpr uint64_t kChangelogTrimEvery = 1024;

inline uint64_t Pair(uint32_t u, uint32_t i) { return (uint64_t{u} << 32) | i; }

Status ValidateEvent(const ClickEvent& e, size_t index) {
  if (e.user_id.empty() || e.user_id.size() > kMaxIdBytes || e.item_id.empty() ||
      e.item_id.size() > kMaxIdBytes) {
    return Status::InvalidArgument("state: event " + std::to_string(index) +
                                   " has an empty or oversized id");
  }
  return Status::Ok();
}

// A snapshot of `db`, released when the last copy goes (null where the database takes none, a
// read-only open maybe: reads then see the latest data, which does not change there).
std::shared_ptr<const rocksdb::Snapshot> TakeSnapshot(rocksdb::DB* db) {
  return {db->GetSnapshot(), [db](const rocksdb::Snapshot* snap) {
            if (snap != nullptr) db->ReleaseSnapshot(snap);
          }};
}

}  // namespace

class StateStore::Impl {
 public:
  explicit Impl(const StateOptions& options)
      : options_(options), setup_(MakeDbSetup(options)), session_length_(options.session_length) {}
  ~Impl() { CloseDb().IgnoreError(); }

  Status OpenDb();
  Status CloseDb();
  Result<BatchResult> Apply(std::span<const ClickEvent> events,
                            std::span<const PartitionOffset> offsets);
  // Unavailable when the disk of the store has less than `floor` bytes free (0: no check);
  // `then` says what the store does not do.
  Status CheckFreeSpace(uint64_t floor, std::string_view then) const {
    if (floor == 0) return Status::Ok();
    struct statvfs fs {};
    if (statvfs(options_.path.c_str(), &fs) != 0) return Status::Ok();  // unknown: let the write say
    const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    if (free_bytes >= floor) return Status::Ok();
    return Status::Unavailable("state: " + std::to_string(free_bytes >> 10) + " KiB free on the disk of " +
                               options_.path + ", below the " + std::to_string(floor >> 10) +
                               " KiB it must keep (state.min_free_disk_mb): " + std::string(then));
  }

  Result<std::vector<SessionEntry>> Session(UserId user) const;
  Result<std::vector<Edge>> UserNeighbours(UserId user) const;
  Result<std::vector<Edge>> ItemNeighbours(ItemId item) const;
  NodeStats UserStats(UserId user) const {
    std::shared_lock lock(mu_);
    return user < user_stats_.size() ? user_stats_[user] : NodeStats{};
  }
  NodeStats ItemStats(ItemId item) const {
    std::shared_lock lock(mu_);
    return item < item_stats_.size() ? item_stats_[item] : NodeStats{};
  }
  StateCounts Counts() const {
    std::shared_lock lock(mu_);
    return CountsLocked();
  }
  std::vector<PartitionOffset> Offsets() const {
    std::shared_lock lock(mu_);
    std::vector<PartitionOffset> out;
    out.reserve(offsets_.size());
    for (const auto& [tp, off] : offsets_) out.push_back({tp, off, LastRecordLocked(tp)});
    return out;
  }
  std::optional<PartitionOffset> LastRecord(const TopicPartition& tp) const {
    std::shared_lock lock(mu_);
    const auto off = offsets_.find(tp);
    const uint64_t last = LastRecordLocked(tp);
    if (off == offsets_.end() || last == 0) return std::nullopt;
    return PartitionOffset{tp, off->second, last};
  }
  uint64_t LastRecordLocked(const TopicPartition& tp) const {
    auto it = last_records_.find(tp);
    return it == last_records_.end() ? 0 : it->second;
  }
  std::optional<int64_t> Offset(const TopicPartition& tp) const {
    std::shared_lock lock(mu_);
    auto it = offsets_.find(tp);
    if (it == offsets_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<uint32_t> Find(const IdMap& map, std::string_view ext) const {
    std::shared_lock lock(mu_);
    return map.Find(ext);
  }
  Result<std::string> Name(const Names& names, uint32_t id,
                           const char* what) const {
    std::shared_lock lock(mu_);
    // Closed, the name lists are empty: kNotFound would tell a caller the id never existed.
    GSAU_RETURN_IF_ERROR(CheckOpenLocked());
    if (id >= names.size()) return Status::NotFound(std::string("state: no ") + what + " " + std::to_string(id));
    return *names[id];
  }
  Result<ChangeSet> ChangesSince(uint64_t from_seq) const;
  uint64_t OldestChangeSeq() const {
    std::shared_lock lock(mu_);
    return first_retained_change_ - 1;
  }
  Result<StateCounts> ForEachEdge(const std::function<void(const Edge&)>& fn) const;
  Result<StateCounts> ForEachSession(
      const std::function<void(UserId, std::span<const SessionEntry>)>& fn) const;
  Result<uint64_t> CreateCheckpoint(const std::string& dir) const;
  Status Flush() const;
  Status Compact();
  Result<uint64_t> DiskBytes() const;

  const IdMap& user_ids() const { return user_ids_; }
  const IdMap& item_ids() const { return item_ids_; }
  const Names& user_names() const { return user_names_; }
  const Names& item_names() const { return item_names_; }

 private:
  Status LoadCaches();
  Status TrimSessionsIfResized();
  Status AdoptRecordedSessionLength();
  Status LoadIds(keys::Cf cf, IdMap* map, Names* names, const char* what);
  StateCounts CountsLocked() const {
    return {seq_, user_names_.size(), item_names_.size(), edges_, events_};
  }
  Status CheckOpenLocked() const {
    return db_ ? Status::Ok() : Status::Aborted("state: store is closed");
  }
  // A read-only store refuses what writes, as bad use rather than RocksDB's NotSupported (which
  // maps to kInternal, a bug of ours).
  Status CheckWritable(std::string_view what) const {
    if (!options_.read_only) return Status::Ok();
    return Status::InvalidArgument("state: " + options_.path + " is open read-only: cannot " + std::string(what));
  }
  rocksdb::ColumnFamilyHandle* cf(keys::Cf c) const { return cfs_[c]; }

  // Per-node stats being changed by the batch in progress: slot_[id] - 1 indexes staged_.
  struct Staging {
    std::vector<uint32_t> slot;
    std::vector<std::pair<uint32_t, NodeStats>> staged;
    NodeStats& Get(uint32_t id, const Stats& committed) {
      if (id >= slot.size()) slot.resize(std::max<size_t>(id + 1, slot.size() * 2), 0);
      if (slot[id] == 0) {
        staged.emplace_back(id, id < committed.size() ? committed[id] : NodeStats{});
        slot[id] = static_cast<uint32_t>(staged.size());
      }
      return staged[slot[id] - 1].second;
    }
    void Reset() {
      for (const auto& [id, stats] : staged) slot[id] = 0;
      staged.clear();
    }
  };

  const StateOptions options_;
  const DbSetup setup_;
  // The N that session reads return: options_.session_length, except that a read-only open
  // takes the N the store records (its writer's), so that a reader shows what the writer keeps.
  uint32_t session_length_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs_;

  // Serialises a batch's write and commit with CreateCheckpoint, which must find no batch
  // written to RocksDB but not yet to the caches. Taken before mu_.
  mutable std::mutex write_mu_;
  bool write_failed_ = false;  // the last write failed: Resume() before the next (under write_mu_)

  // Guards everything below against readers. A batch is written to RocksDB outside it (readers
  // do not wait out a write, its fsync or a write stall), then committed under it exclusively:
  // the caches and snapshot_, the database as of that batch. Readers read the database through
  // snapshot_ only, so a reader sees the database and the caches at the same batch. The writer
  // reads the caches without it (it is their only writer).
  mutable std::shared_mutex mu_;
  std::shared_ptr<const rocksdb::Snapshot> snapshot_;
  IdMap user_ids_, item_ids_;
  Names user_names_, item_names_;
  Stats user_stats_, item_stats_;
  std::deque<std::vector<UserId>> item_users_;  // reverse adjacency, in edge-creation order
  std::map<TopicPartition, int64_t> offsets_;
  std::map<TopicPartition, uint64_t> last_records_;  // PartitionOffset::last_record, those known
  uint64_t seq_ = 0;
  uint64_t edges_ = 0;
  uint64_t events_ = 0;
  uint64_t first_retained_change_ = 1;

  // Writer scratch, reused across batches to keep allocations off the hot path.
  rocksdb::WriteBatch wb_;
  Staging staged_users_, staged_items_;
  std::vector<std::string_view> new_users_, new_items_;
  StagedIdMap staged_user_ids_, staged_item_ids_;
  std::vector<uint64_t> pairs_;        // per event
  std::vector<uint64_t> touched_;      // distinct, ascending
  std::vector<keys::EdgeValue> edge_values_;
  std::vector<uint8_t> edge_exists_;
  struct SessionOp {
    uint32_t user;
    uint64_t pos;
    uint32_t item;
    int64_t ts_ms;
    bool del;
  };
  std::vector<SessionOp> session_ops_;
  std::vector<uint64_t> new_item_users_;  // new edges as (item << 32 | user)
  std::vector<std::pair<std::string_view, uint32_t>> names_sorted_;
  std::string scratch_;
  std::vector<std::pair<uint32_t, uint64_t>> clicks_before_;  // the change entry's, reused
};

Status StateStore::Impl::OpenDb() {
  GSAU_RETURN_IF_ERROR(options_.Validate());
  std::error_code ec;
  if ((options_.read_only || !options_.create_if_missing) && !fs::exists(fs::path(options_.path) / "CURRENT", ec)) {
    return Status::NotFound("state: no store at " + options_.path);
  }
  rocksdb::DB* raw = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  if (options_.read_only) {
    GSAU_RETURN_IF_ERROR(FromRocks(
        rocksdb::DB::OpenForReadOnly(setup_.db, options_.path, setup_.families, &handles, &raw),
        "state: open (read-only) " + options_.path));
  } else {
    fs::create_directories(options_.path, ec);
    if (ec) return Status::IoError("state: cannot create " + options_.path + ": " + ec.message());
    // RocksDB writes as it opens (a manifest, a log); on a full disk the librocksdb of Debian
    // 12 fails an assertion there and aborts the process. The floor, up to 64 MiB: enough to
    // open, and a store whose writes hold on a higher floor still opens to be read.
    GSAU_RETURN_IF_ERROR(CheckFreeSpace(std::min<uint64_t>(options_.min_free_disk_bytes, uint64_t{64} << 20),
                                        "not opening the store until space returns"));
    GSAU_RETURN_IF_ERROR(FromRocks(
        rocksdb::DB::Open(setup_.db, options_.path, setup_.families, &handles, &raw),
        "state: open " + options_.path));
  }
  db_.reset(raw);
  cfs_ = std::move(handles);
  Status s = LoadCaches();
  if (s.ok()) s = options_.read_only ? AdoptRecordedSessionLength() : TrimSessionsIfResized();
  if (!s.ok()) {
    CloseDb().IgnoreError();  // the load error is the one to report
    return s;
  }
  {
    std::unique_lock lock(mu_);
    snapshot_ = TakeSnapshot(db_.get());
    // Readers rely on it to pair the caches with the data (a read-only open's data never moves).
    if (snapshot_ == nullptr && !options_.read_only) s = Status::Internal("state: RocksDB gives no snapshots");
  }
  if (!s.ok()) {
    CloseDb().IgnoreError();
    return s;
  }
  GSAU_LOG_INFO("state: opened {} at batch {}: {} users, {} items, {} edges, {} events",
                options_.path, seq_, user_names_.size(), item_names_.size(), edges_, events_);
  return Status::Ok();
}

Status StateStore::Impl::CloseDb() {
  std::lock_guard write_lock(write_mu_);
  std::unique_lock lock(mu_);
  if (!db_) return Status::Ok();
  // RocksDB refuses to close with a snapshot held (a reader still inside a call would hold a
  // copy: the header requires none).
  snapshot_.reset();
  Status result;
  for (auto* h : cfs_) {
    Status s = FromRocks(db_->DestroyColumnFamilyHandle(h), "state: close");
    if (result.ok()) result = s;
  }
  cfs_.clear();
  Status s = FromRocks(db_->Close(), "state: close");
  if (result.ok()) result = s;
  db_.reset();
  // A closed store answers nothing, rather than what it held.
  user_ids_.Clear();
  item_ids_.Clear();
  user_names_.clear();
  item_names_.clear();
  user_stats_.clear();
  item_stats_.clear();
  item_users_.clear();
  offsets_.clear();
  last_records_.clear();
  seq_ = edges_ = events_ = 0;
  first_retained_change_ = 1;
  return result;
}

Status StateStore::Impl::LoadIds(keys::Cf c, IdMap* map, Names* names, const char* what) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(c)));
  std::vector<std::pair<uint32_t, const std::string*>> ids;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->value().size() != 4) return Status::Corruption(std::string("state: bad ") + what + " id value");
    const auto id = keys::GetFixed<uint32_t>(it->value().data());
    auto [name, inserted] = map->Emplace(it->key().ToString(), id);
    if (!inserted) return Status::Corruption(std::string("state: duplicate ") + what + " id");
    ids.emplace_back(id, name);
  }
  GSAU_RETURN_IF_ERROR(FromRocks(it->status(), "state: load ids"));
  // Dense ids are 0 .. n-1: checked before anything is sized by an id (a stored 0xFFFFFFFF made
  // `id + 1` wrap to 0 and the write below land outside the vector).
  names->assign(ids.size(), nullptr);
  for (const auto& [id, name] : ids) {
    if (id >= ids.size()) return Status::Corruption(std::string("state: ") + what + " ids are not dense");
    if ((*names)[id] != nullptr) return Status::Corruption(std::string("state: ") + what + " id reused");
    (*names)[id] = name;
  }
  return Status::Ok();
}

Status StateStore::Impl::LoadCaches() {
  std::string value;
  rocksdb::ReadOptions ro;
  auto s = db_->Get(ro, cf(keys::kMeta), S(keys::kFormatKey), &value);
  if (s.IsNotFound() && options_.read_only) {
    return Status::NotFound("state: " + options_.path + " holds no state store");
  } else if (s.IsNotFound()) {
    // A new store, or one that was never written: stamp it.
    GSAU_RETURN_IF_ERROR(FromRocks(
        db_->Put(setup_.write, cf(keys::kMeta), S(keys::kFormatKey), S(keys::kFormatVersion)),
        "state: write format"));
  } else {
    GSAU_RETURN_IF_ERROR(FromRocks(s, "state: read format"));
    if (value == keys::kFormatVersionNoClicks && !options_.read_only) {
      GSAU_RETURN_IF_ERROR(FromRocks(
          db_->Put(setup_.write, cf(keys::kMeta), S(keys::kFormatKey), S(keys::kFormatVersion)),
          "state: write format"));
    } else if (value != keys::kFormatVersion && value != keys::kFormatVersionNoClicks) {
      return Status::Unimplemented("state: unknown store format " + value + " (written by a newer version?)");
    }
  }
  s = db_->Get(ro, cf(keys::kMeta), S(keys::kSeqKey), &value);
  if (s.ok()) {
    if (value.size() != 8) return Status::Corruption("state: bad batch sequence");
    seq_ = keys::GetFixed<uint64_t>(value.data());
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "state: read batch sequence");
  }

  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(keys::kMeta)));
    for (it->Seek(S(keys::kOffsetPrefix)); it->Valid() && it->key().starts_with(S(keys::kOffsetPrefix));
         it->Next()) {
      const std::string_view k = V(it->key()).substr(keys::kOffsetPrefix.size());
      if (k.size() < 5 || k[k.size() - 5] != '\0' || it->value().size() != 8) {
        return Status::Corruption("state: bad offset record");
      }
      TopicPartition tp{std::string(k.substr(0, k.size() - 5)),
                        static_cast<int32_t>(keys::GetBE32(k.data() + k.size() - 4))};
      offsets_[tp] = keys::GetFixed<int64_t>(it->value().data());
    }
    GSAU_RETURN_IF_ERROR(FromRocks(it->status(), "state: load offsets"));
    // A fingerprint counts only for the offset it was written with (a version without them
    // moves the offset on and leaves it behind).
    for (it->Seek(S(keys::kOffsetRecordPrefix));
         it->Valid() && it->key().starts_with(S(keys::kOffsetRecordPrefix)); it->Next()) {
      const std::string_view k = V(it->key()).substr(keys::kOffsetRecordPrefix.size());
      if (k.size() < 5 || k[k.size() - 5] != '\0' || it->value().size() != 16) {
        // Advisory (another version's layout, say): without it a replaced log goes unnoticed
        // for that partition, which is no reason to refuse the whole store.
        GSAU_LOG_WARN("state: an offset's record fingerprint of an unknown layout is left unused");
        continue;
      }
      TopicPartition tp{std::string(k.substr(0, k.size() - 5)),
                        static_cast<int32_t>(keys::GetBE32(k.data() + k.size() - 4))};
      const auto off = offsets_.find(tp);
      if (off != offsets_.end() && off->second == keys::GetFixed<int64_t>(it->value().data())) {
        last_records_[tp] = keys::GetFixed<uint64_t>(it->value().data() + 8);
      }
    }
    GSAU_RETURN_IF_ERROR(FromRocks(it->status(), "state: load offset fingerprints"));
  }

  GSAU_RETURN_IF_ERROR(LoadIds(keys::kUserIds, &user_ids_, &user_names_, "user"));
  GSAU_RETURN_IF_ERROR(LoadIds(keys::kItemIds, &item_ids_, &item_names_, "item"));

  user_stats_.assign(user_names_.size(), NodeStats{});
  item_stats_.assign(item_names_.size(), NodeStats{});
  item_users_.assign(item_names_.size(), {});
  // Degrees, clicks and the reverse adjacency are not stored (keys.h): one scan of the edges
  // gives them.
  {
    rocksdb::ReadOptions scan;
    scan.fill_cache = false;
    scan.readahead_size = 2 << 20;
    scan.total_order_seek = true;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(scan, cf(keys::kEdges)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->key().size() != 8 || it->value().size() != keys::kEdgeValueSize) {
        return Status::Corruption("state: bad edge record");
      }
      const uint32_t u = keys::GetBE32(it->key().data());
      const uint32_t i = keys::GetBE32(it->key().data() + 4);
      if (u >= user_stats_.size() || i >= item_stats_.size()) {
        return Status::Corruption("state: edge of an unknown user or item");
      }
      const uint32_t count = keys::GetFixed<uint32_t>(it->value().data());
      ++user_stats_[u].degree;
      user_stats_[u].clicks += count;
      ++item_stats_[i].degree;
      item_stats_[i].clicks += count;
      item_users_[i].push_back(u);
    }
    GSAU_RETURN_IF_ERROR(FromRocks(it->status(), "state: load edges"));
  }
  uint64_t user_degrees = 0, user_clicks = 0;
  for (const auto& n : user_stats_) user_degrees += n.degree, user_clicks += n.clicks;
  edges_ = user_degrees;
  events_ = user_clicks;

  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(keys::kChanges)));
    it->SeekToFirst();
    GSAU_RETURN_IF_ERROR(FromRocks(it->status(), "state: load change feed"));
    if (it->Valid() && it->key().size() != 8) return Status::Corruption("state: a change feed key is not 8 bytes");
    first_retained_change_ = it->Valid() ? keys::GetBE64(it->key().data()) : seq_ + 1;
  }
  return Status::Ok();
}

// A store written before the length was recorded has none (or one a writable open would
// replace): the reader then uses its own.
Status StateStore::Impl::AdoptRecordedSessionLength() {
  std::string value;
  auto s = db_->Get(rocksdb::ReadOptions(), cf(keys::kMeta), S(keys::kSessionLengthKey), &value);
  if (s.IsNotFound()) return Status::Ok();
  GSAU_RETURN_IF_ERROR(FromRocks(s, "state: read session length"));
  const uint32_t n = value.size() == 4 ? keys::GetFixed<uint32_t>(value.data()) : 0;
  if (n < 1) {
    // As a writable open takes it (it trims again and records its own): no reason to refuse.
    GSAU_LOG_WARN("state: {} records no valid session length: reading {}", options_.path, session_length_);
    return Status::Ok();
  }
  if (n != session_length_) {
    GSAU_LOG_INFO("state: {} keeps sessions of {} clicks (session_length {} configured): reading {}",
                  options_.path, n, session_length_, n);
    session_length_ = n;
  }
  return Status::Ok();
}

// A click deletes only the position N behind it, so after N changed between opens some users
// would keep entries outside [clicks - N, clicks) (N lowered), or show, once N was raised again,
// entries from before a gap. The store remembers the N it trims to; when it differs, one scan
// keeps each user's newest run of consecutive positions, at most N long, and deletes the rest.
Status StateStore::Impl::TrimSessionsIfResized() {
  std::string value;
  auto s = db_->Get(rocksdb::ReadOptions(), cf(keys::kMeta), S(keys::kSessionLengthKey), &value);
  if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "state: read session length");
  const uint32_t n = options_.session_length;
  if (s.ok() && value.size() == 4 && keys::GetFixed<uint32_t>(value.data()) == n) return Status::Ok();
  rocksdb::WriteBatch wb;
  uint64_t trimmed = 0;
  if (seq_ > 0) {
    rocksdb::ReadOptions scan;
    scan.fill_cache = false;
    scan.total_order_seek = true;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(scan, cf(keys::kSessions)));
    // Positions of one user, ascending; its keep-run is decided when the next user starts.
    std::vector<uint64_t> pos;
    UserId current = 0;
    auto finish = [&]() -> Status {
      if (pos.empty()) return Status::Ok();
      const uint64_t clicks = current < user_stats_.size() ? user_stats_[current].clicks : 0;
      size_t keep = pos.size();  // pos[keep..] is kept
      uint64_t expect = clicks;
      while (keep > 0 && pos[keep - 1] + 1 == expect && clicks - pos[keep - 1] <= n) expect = pos[--keep];
      for (size_t k = 0; k < keep; ++k) {
        const auto key = keys::SessionKey(current, pos[k]);
        GSAU_RETURN_IF_ERROR(FromRocks(wb.Delete(cf(keys::kSessions), S(key.view())), "state: trim session"));
        ++trimmed;
      }
      pos.clear();
      // In pieces: a big store lowered by much would otherwise hold every delete in memory at
      // once. A stop in between leaves the length unrecorded, and the next open trims again.
      if (wb.Count() >= 100000) {
        GSAU_RETURN_IF_ERROR(FromRocks(db_->Write(setup_.write, &wb), "state: write trimmed sessions"));
        wb.Clear();
      }
      return Status::Ok();
    };
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->key().size() != 12) return Status::Corruption("state: bad session record");
      const UserId u = keys::GetBE32(it->key().data());
      if (u != current) {
        GSAU_RETURN_IF_ERROR(finish());
        current = u;
      }
      pos.push_back(keys::GetBE64(it->key().data() + 4));
    }
    GSAU_RETURN_IF_ERROR(FromRocks(it->status(), "state: scan sessions"));
    GSAU_RETURN_IF_ERROR(finish());
  }
  char raw[4];
  std::memcpy(raw, &n, sizeof raw);
  GSAU_RETURN_IF_ERROR(FromRocks(wb.Put(cf(keys::kMeta), S(keys::kSessionLengthKey), rocksdb::Slice(raw, sizeof raw)),
                                 "state: record session length"));
  GSAU_RETURN_IF_ERROR(FromRocks(db_->Write(setup_.write, &wb), "state: write trimmed sessions"));
  if (trimmed > 0) {
    GSAU_LOG_INFO("state: session_length is now {}: {} session entries outside each user's last {} clicks removed",
                  n, trimmed, n);
  }
  return Status::Ok();
}

Result<BatchResult> StateStore::Impl::Apply(std::span<const ClickEvent> events,
                                            std::span<const PartitionOffset> offsets) {
  if (!db_) return Status::Aborted("state: store is closed");
  GSAU_RETURN_IF_ERROR(CheckWritable("apply a batch"));
  for (size_t k = 0; k < events.size(); ++k) GSAU_RETURN_IF_ERROR(ValidateEvent(events[k], k));
  for (size_t k = 0; k < offsets.size(); ++k) {
    const auto& po = offsets[k];
    if (po.next_offset < 0) return Status::InvalidArgument("state: negative offset for " + po.tp.topic);
    if (po.tp.topic.empty() || po.tp.topic.find('\0') != std::string::npos) {
      return Status::InvalidArgument("state: bad topic name in offsets");
    }
    for (size_t j = 0; j < k; ++j) {
      if (offsets[j].tp == po.tp) {
        return Status::InvalidArgument("state: partition " + po.tp.topic + "/" +
                                       std::to_string(po.tp.partition) + " listed twice");
      }
    }
    auto it = offsets_.find(po.tp);
    if (it != offsets_.end() && po.next_offset < it->second) {
      return Status::InvalidArgument("state: offset of " + po.tp.topic + "/" +
                                     std::to_string(po.tp.partition) + " goes back from " +
                                     std::to_string(it->second) + " to " +
                                     std::to_string(po.next_offset));
    }
  }
  BatchResult result;
  if (events.empty() && offsets.empty()) {
    result.batch_seq = seq_;
    return result;
  }
  // After the checks of the batch itself: an offset going back is refused (kInvalidArgument,
  // which ingest does not retry) on a full disk too, not retried until space returns.
  GSAU_RETURN_IF_ERROR(CheckFreeSpace(options_.min_free_disk_bytes, "not writing until space returns"));

  // 1. Internal ids: known ones from the maps, new ones numbered in order of appearance.
  const auto users_before = static_cast<uint32_t>(user_names_.size());
  const auto items_before = static_cast<uint32_t>(item_names_.size());
  new_users_.clear();
  new_items_.clear();
  staged_user_ids_.clear();
  staged_item_ids_.clear();
  result.events.resize(events.size());
  pairs_.resize(events.size());
  auto resolve = [](const IdMap& map, StagedIdMap& staged, std::vector<std::string_view>& fresh,
                    uint32_t before, std::string_view ext, bool* is_new) -> uint32_t {
    if (auto id = map.Find(ext)) return *id;
    auto [it, inserted] = staged.emplace(ext, before + static_cast<uint32_t>(fresh.size()));
    if (inserted) {
      fresh.push_back(ext);
      *is_new = true;
    }
    return it->second;
  };
  for (size_t k = 0; k < events.size(); ++k) {
    auto& a = result.events[k];
    a.user = resolve(user_ids_, staged_user_ids_, new_users_, users_before, events[k].user_id, &a.new_user);
    a.item = resolve(item_ids_, staged_item_ids_, new_items_, items_before, events[k].item_id, &a.new_item);
    a.ts_ms = events[k].ts_ms;
    pairs_[k] = Pair(a.user, a.item);
  }
  if (users_before + new_users_.size() >= kMaxIds || items_before + new_items_.size() >= kMaxIds) {
    return Status::Internal("state: more than 2^32-1 users or items");
  }

  // 2. Which pairs are edges already: one MultiGet over the distinct old-id pairs.
  touched_.assign(pairs_.begin(), pairs_.end());
  std::sort(touched_.begin(), touched_.end());
  touched_.erase(std::unique(touched_.begin(), touched_.end()), touched_.end());
  edge_values_.assign(touched_.size(), keys::EdgeValue{});
  edge_exists_.assign(touched_.size(), 0);
  {
    std::vector<keys::Key8> key_store;
    std::vector<rocksdb::Slice> lookup_keys;
    std::vector<size_t> lookup_index;
    key_store.reserve(touched_.size());
    for (size_t k = 0; k < touched_.size(); ++k) {
      const auto u = static_cast<uint32_t>(touched_[k] >> 32);
      const auto i = static_cast<uint32_t>(touched_[k]);
      if (u >= users_before || i >= items_before) continue;  // a new id has no edges yet
      key_store.push_back(keys::PairKey(u, i));
      lookup_index.push_back(k);
    }
    for (const auto& key : key_store) lookup_keys.push_back(S(key.view()));
    if (!lookup_keys.empty()) {
      std::vector<rocksdb::PinnableSlice> values(lookup_keys.size());
      std::vector<rocksdb::Status> statuses(lookup_keys.size());
      // Keys are ascending (touched_ is), which lets MultiGet skip its own sort.
      db_->MultiGet(rocksdb::ReadOptions(), cf(keys::kEdges), lookup_keys.size(), lookup_keys.data(),
                    values.data(), statuses.data(), /*sorted_input=*/true);
      for (size_t j = 0; j < lookup_keys.size(); ++j) {
        if (statuses[j].IsNotFound()) continue;
        GSAU_RETURN_IF_ERROR(FromRocks(statuses[j], "state: read edge"));
        if (values[j].size() != keys::kEdgeValueSize) return Status::Corruption("state: bad edge value");
        edge_values_[lookup_index[j]] = keys::DecodeEdgeValue(values[j].data());
        edge_exists_[lookup_index[j]] = 1;
      }
    }
  }

  // 3. Events in order: session positions, edges, degrees and clicks.
  // The writes go into the WriteBatch sorted by key within each family: the memtable's skip
  // list then inserts each key starting from where the previous one went (RocksDB keeps that
  // "splice" between inserts), instead of searching from the top for every key.
  wb_.Clear();
  const uint64_t n_session = options_.session_length;
  uint64_t new_edges = 0;
  session_ops_.clear();
  new_item_users_.clear();
  for (size_t k = 0; k < events.size(); ++k) {
    auto& a = result.events[k];
    const size_t e = std::lower_bound(touched_.begin(), touched_.end(), pairs_[k]) - touched_.begin();
    NodeStats& us = staged_users_.Get(a.user, user_stats_);
    NodeStats& is = staged_items_.Get(a.item, item_stats_);
    if (!edge_exists_[e]) {
      edge_exists_[e] = 2;  // created by this batch
      edge_values_[e] = {0, a.ts_ms};
      a.new_edge = true;
      ++us.degree;
      ++is.degree;
      ++new_edges;
      new_item_users_.push_back(Pair(a.item, a.user));
    }
    auto& ev = edge_values_[e];
    ++ev.count;
    ev.last_ts_ms = std::max(ev.last_ts_ms, a.ts_ms);
    const uint64_t pos = us.clicks++;
    a.click_index = pos;
    ++is.clicks;
    session_ops_.push_back({a.user, pos, a.item, a.ts_ms, false});
    if (pos >= n_session) session_ops_.push_back({a.user, pos - n_session, 0, 0, true});
  }
  // A user with more than N clicks in one batch has a position put and deleted in it: the put
  // must come first.
  std::sort(session_ops_.begin(), session_ops_.end(), [](const SessionOp& x, const SessionOp& y) {
    return std::tie(x.user, x.pos, x.del) < std::tie(y.user, y.pos, y.del);
  });
  // A WriteBatch refuses an entry only past its size limits (4 GiB keys or values, a whole batch
  // beyond max_bytes): the first refusal fails the batch before anything is written.
  rocksdb::Status built;
  auto add = [&built](rocksdb::Status s) {
    if (built.ok()) built = std::move(s);
  };
  char value[keys::kSessionValueSize];
  for (const auto& op : session_ops_) {
    const auto key = keys::SessionKey(op.user, op.pos);
    if (op.del) {
      add(wb_.Delete(cf(keys::kSessions), S(key.view())));
    } else {
      keys::EncodeSessionValue(value, op.item, op.ts_ms);
      add(wb_.Put(cf(keys::kSessions), S(key.view()), rocksdb::Slice(value, sizeof value)));
    }
  }
  for (size_t e = 0; e < touched_.size(); ++e) {
    keys::EncodeEdgeValue(value, edge_values_[e]);
    add(wb_.Put(cf(keys::kEdges), S(keys::PairKey(static_cast<uint32_t>(touched_[e] >> 32),
                                                   static_cast<uint32_t>(touched_[e])).view()),
                rocksdb::Slice(value, keys::kEdgeValueSize)));
  }
  auto put_names = [&](keys::Cf c, std::vector<std::string_view>& names, uint32_t first_id) {
    names_sorted_.clear();
    for (size_t k = 0; k < names.size(); ++k) names_sorted_.emplace_back(names[k], first_id + static_cast<uint32_t>(k));
    std::sort(names_sorted_.begin(), names_sorted_.end());
    for (const auto& [name, id] : names_sorted_) {
      add(wb_.Put(cf(c), S(name), rocksdb::Slice(reinterpret_cast<const char*>(&id), 4)));
    }
  };
  put_names(keys::kUserIds, new_users_, users_before);
  put_names(keys::kItemIds, new_items_, items_before);

  // 4. The batch's sequence number, offsets and change entry travel in the same WriteBatch.
  const uint64_t seq = seq_ + 1;
  add(wb_.Put(cf(keys::kMeta), S(keys::kSeqKey), rocksdb::Slice(reinterpret_cast<const char*>(&seq), 8)));
  for (const auto& po : offsets) {
    add(wb_.Put(cf(keys::kMeta), keys::OffsetKey(po.tp.topic, po.tp.partition),
                rocksdb::Slice(reinterpret_cast<const char*>(&po.next_offset), 8)));
    const std::string record_key = keys::OffsetKey(po.tp.topic, po.tp.partition, keys::kOffsetRecordPrefix);
    if (po.last_record != 0) {
      char v[16];
      std::memcpy(v, &po.next_offset, 8);
      std::memcpy(v + 8, &po.last_record, 8);
      add(wb_.Put(cf(keys::kMeta), record_key, rocksdb::Slice(v, 16)));
    } else if (last_records_.count(po.tp) != 0) {
      add(wb_.Delete(cf(keys::kMeta), record_key));
    }
  }
  ChangeEntry change{users_before, items_before, {}, {}};
  change.pairs.swap(touched_);
  change.clicks_before.swap(clicks_before_);
  change.clicks_before.clear();
  for (const auto& [id, stats] : staged_users_.staged) {
    change.clicks_before.emplace_back(id, id < user_stats_.size() ? user_stats_[id].clicks : 0);
  }
  std::sort(change.clicks_before.begin(), change.clicks_before.end());
  EncodeChangeEntry(change, &scratch_);
  change.pairs.swap(touched_);
  change.clicks_before.swap(clicks_before_);
  add(wb_.Put(cf(keys::kChanges), S(keys::SeqKey(seq).view()), scratch_));
  uint64_t first_retained = first_retained_change_;
  const uint64_t retention = options_.changelog_retention_batches;
  if (seq % kChangelogTrimEvery == 0 && seq > retention && seq - retention + 1 > first_retained) {
    first_retained = seq - retention + 1;
    add(wb_.DeleteRange(cf(keys::kChanges), S(keys::SeqKey(0).view()), S(keys::SeqKey(first_retained).view())));
  }
  if (!built.ok()) {
    staged_users_.Reset();
    staged_items_.Reset();
    return FromRocks(built, "state: build write batch");
  }

  // 5. Write, then commit to the caches and publish the snapshot of that write; readers take
  // mu_ only for the commit.
  {
    std::lock_guard write_lock(write_mu_);
    // A failed WAL write (disk full, I/O error) leaves RocksDB read-only until Resume(); the
    // caller retries the same batch, so resume first (it fails, and the retry waits, while the
    // cause lasts). Nothing of the failed batch reached the memtable or these caches.
    Status s = write_failed_ ? FromRocks(db_->Resume(), "state: resume after a failed write") : Status::Ok();
    if (s.ok()) s = FromRocks(db_->Write(setup_.write, &wb_), "state: write batch");
    write_failed_ = !s.ok();
    if (!s.ok()) {
      staged_users_.Reset();
      staged_items_.Reset();
      return s;
    }
    // The only writer, under write_mu_: this snapshot holds exactly this batch on top of the last.
    // The one it replaces is released after the lock below (by its last reader, if any).
    auto snapshot = TakeSnapshot(db_.get());
    std::unique_lock lock(mu_);
    for (size_t k = 0; k < new_users_.size(); ++k) {
      const auto id = users_before + static_cast<uint32_t>(k);
      user_names_.push_back(user_ids_.Emplace(std::string(new_users_[k]), id).first);
    }
    for (size_t k = 0; k < new_items_.size(); ++k) {
      const auto id = items_before + static_cast<uint32_t>(k);
      item_names_.push_back(item_ids_.Emplace(std::string(new_items_[k]), id).first);
    }
    user_stats_.resize(user_names_.size());
    item_stats_.resize(item_names_.size());
    for (const auto& [id, stats] : staged_users_.staged) user_stats_[id] = stats;
    for (const auto& [id, stats] : staged_items_.staged) item_stats_[id] = stats;
    item_users_.resize(item_names_.size());
    for (uint64_t p : new_item_users_) {
      item_users_[static_cast<uint32_t>(p >> 32)].push_back(static_cast<uint32_t>(p));
    }
    for (const auto& po : offsets) {
      offsets_[po.tp] = po.next_offset;
      if (po.last_record != 0) {
        last_records_[po.tp] = po.last_record;
      } else {
        last_records_.erase(po.tp);
      }
    }
    edges_ += new_edges;
    events_ += events.size();
    seq_ = seq;
    first_retained_change_ = first_retained;
    snapshot_.swap(snapshot);
  }
  staged_users_.Reset();
  staged_items_.Reset();
  result.batch_seq = seq;
  return result;
}

// The point reads below copy what they need of the caches and the snapshot under the shared
// lock, then read RocksDB without it: glibc's rwlock lets new readers in while the writer waits,
// so readers that overlapped each other inside their RocksDB reads kept the writer's commit
// out for seconds (3 threads reading sessions: 4 batches in 8 s).
Result<std::vector<SessionEntry>> StateStore::Impl::Session(UserId user) const {
  std::shared_ptr<const rocksdb::Snapshot> snap;
  uint64_t clicks = 0;
  uint64_t n = 0;
  {
    std::shared_lock lock(mu_);
    GSAU_RETURN_IF_ERROR(CheckOpenLocked());
    if (user >= user_stats_.size()) return Status::NotFound("state: no user " + std::to_string(user));
    snap = snapshot_;
    clicks = user_stats_[user].clicks;
    n = session_length_;
  }
  const uint64_t start = clicks > n ? clicks - n : 0;
  const auto lo = keys::SessionKey(user, start);
  const auto hi = keys::SessionKey(user, clicks);
  const rocksdb::Slice upper = S(hi.view());
  rocksdb::ReadOptions ro;
  ro.snapshot = snap.get();
  ro.iterate_upper_bound = &upper;
  ro.prefix_same_as_start = true;
  std::vector<SessionEntry> out;
  out.reserve(clicks - start);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(keys::kSessions)));
  for (it->Seek(S(lo.view())); it->Valid(); it->Next()) {
    if (it->value().size() != keys::kSessionValueSize) return Status::Corruption("state: bad session entry");
    out.push_back({keys::GetFixed<uint32_t>(it->value().data()), keys::GetFixed<int64_t>(it->value().data() + 4)});
  }
  GSAU_RETURN_IF_ERROR(FromRocks(it->status(), "state: read session"));
  // Fewer than min(clicks, N) entries only after N was raised between opens: the clicks that
  // the smaller N had dropped stay dropped.
  return out;
}

Result<std::vector<Edge>> StateStore::Impl::UserNeighbours(UserId user) const {
  std::shared_ptr<const rocksdb::Snapshot> snap;
  size_t degree = 0;
  {
    std::shared_lock lock(mu_);
    GSAU_RETURN_IF_ERROR(CheckOpenLocked());
    if (user >= user_stats_.size()) return Status::NotFound("state: no user " + std::to_string(user));
    snap = snapshot_;
    degree = user_stats_[user].degree;
  }
  const auto lo = keys::PairKey(user, 0);
  const auto hi = keys::PairKey(user + 1, 0);
  const rocksdb::Slice upper = S(hi.view());
  rocksdb::ReadOptions ro;
  ro.snapshot = snap.get();
  ro.iterate_upper_bound = &upper;
  ro.prefix_same_as_start = true;
  std::vector<Edge> out;
  out.reserve(degree);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(keys::kEdges)));
  for (it->Seek(S(lo.view())); it->Valid(); it->Next()) {
    if (it->value().size() != keys::kEdgeValueSize) return Status::Corruption("state: bad edge value");
    const auto v = keys::DecodeEdgeValue(it->value().data());
    out.push_back({user, keys::GetBE32(it->key().data() + 4), v.count, v.last_ts_ms});
  }
  GSAU_RETURN_IF_ERROR(FromRocks(it->status(), "state: read user neighbours"));
  return out;
}

Result<std::vector<Edge>> StateStore::Impl::ItemNeighbours(ItemId item) const {
  std::shared_ptr<const rocksdb::Snapshot> snap;
  std::vector<UserId> users;
  {
    std::shared_lock lock(mu_);
    GSAU_RETURN_IF_ERROR(CheckOpenLocked());
    if (item >= item_stats_.size()) return Status::NotFound("state: no item " + std::to_string(item));
    snap = snapshot_;
    // The users come from the in-memory reverse adjacency, the counts and times from the edges.
    users = item_users_[item];
  }
  std::sort(users.begin(), users.end());
  std::vector<keys::Key8> edge_keys;
  edge_keys.reserve(users.size());
  for (UserId u : users) edge_keys.push_back(keys::PairKey(u, item));
  std::vector<rocksdb::Slice> slices;
  slices.reserve(edge_keys.size());
  for (const auto& k : edge_keys) slices.push_back(S(k.view()));
  std::vector<rocksdb::PinnableSlice> values(slices.size());
  std::vector<rocksdb::Status> statuses(slices.size());
  rocksdb::ReadOptions ro;
  ro.snapshot = snap.get();
  db_->MultiGet(ro, cf(keys::kEdges), slices.size(), slices.data(), values.data(),
                statuses.data(), /*sorted_input=*/true);
  std::vector<Edge> out;
  out.reserve(slices.size());
  for (size_t j = 0; j < slices.size(); ++j) {
    GSAU_RETURN_IF_ERROR(FromRocks(statuses[j], "state: read edge of item neighbour"));
    if (values[j].size() != keys::kEdgeValueSize) return Status::Corruption("state: bad edge value");
    const auto v = keys::DecodeEdgeValue(values[j].data());
    out.push_back({keys::GetBE32(edge_keys[j].data), item, v.count, v.last_ts_ms});
  }
  return out;
}

namespace {

// Sorts what DecodeChangeEntry accumulated and keeps one of each pair, and each user's smallest
// click count (its count before its first batch of the range).
void Deduplicate(ChangeEntry* e) {
  std::sort(e->pairs.begin(), e->pairs.end());
  e->pairs.erase(std::unique(e->pairs.begin(), e->pairs.end()), e->pairs.end());
  std::sort(e->clicks_before.begin(), e->clicks_before.end());
  e->clicks_before.erase(std::unique(e->clicks_before.begin(), e->clicks_before.end(),
                                     [](const auto& a, const auto& b) { return a.first == b.first; }),
                         e->clicks_before.end());
}

// Accumulated entries are deduplicated whenever they reach this many, or twice what the last
// pass left: a long range (a restart behind by many batches) holds about as much as its distinct
// pairs, not one entry per click.
constexpr size_t kDeduplicateAt = 1 << 16;

}  // namespace

Result<ChangeSet> StateStore::Impl::ChangesSince(uint64_t from_seq) const {
  std::shared_ptr<const rocksdb::Snapshot> snap;
  ChangeSet out;
  {
    std::shared_lock lock(mu_);
    GSAU_RETURN_IF_ERROR(CheckOpenLocked());
    if (from_seq > seq_) {
      return Status::InvalidArgument("state: change feed asked from batch " + std::to_string(from_seq) +
                                     " but the store is at " + std::to_string(seq_));
    }
    if (from_seq + 1 < first_retained_change_) {
      return Status::NotFound("state: change feed no longer holds batch " + std::to_string(from_seq + 1) +
                              " (oldest " + std::to_string(first_retained_change_) + "): rebuild");
    }
    out.from_seq = from_seq;
    out.to_seq = seq_;
    out.first_new_user = static_cast<UserId>(user_names_.size());
    out.first_new_item = static_cast<ItemId>(item_names_.size());
    if (from_seq == seq_) return out;
    snap = snapshot_;
  }
  const auto lo = keys::SeqKey(from_seq + 1);
  const auto hi = keys::SeqKey(out.to_seq + 1);
  const rocksdb::Slice upper = S(hi.view());
  rocksdb::ReadOptions ro;
  ro.snapshot = snap.get();
  ro.iterate_upper_bound = &upper;
  ChangeEntry entry;
  uint64_t expect = from_seq + 1;
  size_t deduplicate_at = kDeduplicateAt;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(keys::kChanges)));
  for (it->Seek(S(lo.view())); it->Valid(); it->Next(), ++expect) {
    if (it->key().size() != 8 || keys::GetBE64(it->key().data()) != expect) {
      return Status::Corruption("state: change feed has a gap");
    }
    GSAU_RETURN_IF_ERROR(DecodeChangeEntry(V(it->value()), &entry));
    if (expect == from_seq + 1) {
      out.first_new_user = entry.users_before;
      out.first_new_item = entry.items_before;
    }
    if (entry.pairs.size() + entry.clicks_before.size() >= deduplicate_at) {
      Deduplicate(&entry);
      deduplicate_at = std::max(kDeduplicateAt, 2 * (entry.pairs.size() + entry.clicks_before.size()));
    }
  }
  GSAU_RETURN_IF_ERROR(FromRocks(it->status(), "state: read change feed"));
  if (expect != out.to_seq + 1) return Status::Corruption("state: change feed is short");
  Deduplicate(&entry);
  out.clicks_known = entry.has_clicks;
  if (out.clicks_known) out.clicks_before = std::move(entry.clicks_before);
  out.edges.reserve(entry.pairs.size());
  out.users.reserve(entry.pairs.size());
  out.items.reserve(entry.pairs.size());
  for (uint64_t p : entry.pairs) {
    const auto u = static_cast<UserId>(p >> 32);
    const auto i = static_cast<ItemId>(p);
    out.edges.emplace_back(u, i);
    if (out.users.empty() || out.users.back() != u) out.users.push_back(u);
    out.items.push_back(i);
  }
  std::sort(out.items.begin(), out.items.end());
  out.items.erase(std::unique(out.items.begin(), out.items.end()), out.items.end());
  return out;
}

Result<StateCounts> StateStore::Impl::ForEachEdge(const std::function<void(const Edge&)>& fn) const {
  std::shared_ptr<const rocksdb::Snapshot> snap;
  StateCounts counts;
  {
    std::shared_lock lock(mu_);
    GSAU_RETURN_IF_ERROR(CheckOpenLocked());
    snap = snapshot_;
    counts = CountsLocked();
  }
  rocksdb::ReadOptions ro;
  ro.snapshot = snap.get();
  ro.fill_cache = false;
  ro.total_order_seek = true;  // a full scan would evict the hot blocks
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(keys::kEdges)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != 8 || it->value().size() != keys::kEdgeValueSize) {
      return Status::Corruption("state: bad edge record");
    }
    const auto v = keys::DecodeEdgeValue(it->value().data());
    fn(Edge{keys::GetBE32(it->key().data()), keys::GetBE32(it->key().data() + 4), v.count, v.last_ts_ms});
  }
  GSAU_RETURN_IF_ERROR(FromRocks(it->status(), "state: scan edges"));
  return counts;
}

Result<StateCounts> StateStore::Impl::ForEachSession(
    const std::function<void(UserId, std::span<const SessionEntry>)>& fn) const {
  std::shared_ptr<const rocksdb::Snapshot> snap;
  StateCounts counts;
  {
    std::shared_lock lock(mu_);
    GSAU_RETURN_IF_ERROR(CheckOpenLocked());
    snap = snapshot_;
    counts = CountsLocked();
  }
  rocksdb::ReadOptions ro;
  ro.snapshot = snap.get();
  ro.fill_cache = false;
  ro.total_order_seek = true;
  const uint64_t n = session_length_;
  std::vector<SessionEntry> buf;
  std::vector<uint64_t> pos;
  UserId current = 0;
  auto emit = [&] {
    if (buf.empty()) return;
    // Show what Session() reads: positions [clicks - N, clicks), the newest click being at
    // clicks - 1. Older entries remain after N was lowered between opens (a click deletes only
    // the position N behind it); counting the last N entries instead would bring them back,
    // out of place, once N was raised again.
    const uint64_t first = pos.back() + 1 > n ? pos.back() + 1 - n : 0;
    const size_t skip = std::lower_bound(pos.begin(), pos.end(), first) - pos.begin();
    fn(current, std::span<const SessionEntry>(buf).subspan(skip));
    buf.clear();
    pos.clear();
  };
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(keys::kSessions)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != 12 || it->value().size() != keys::kSessionValueSize) {
      return Status::Corruption("state: bad session record");
    }
    const UserId u = keys::GetBE32(it->key().data());
    if (u != current) {
      emit();
      current = u;
    }
    buf.push_back({keys::GetFixed<uint32_t>(it->value().data()), keys::GetFixed<int64_t>(it->value().data() + 4)});
    pos.push_back(keys::GetBE64(it->key().data() + 4));
  }
  GSAU_RETURN_IF_ERROR(FromRocks(it->status(), "state: scan sessions"));
  emit();
  return counts;
}

Result<uint64_t> StateStore::Impl::CreateCheckpoint(const std::string& dir) const {
  // A checkpoint flushes the memtables: a flush failing on a full disk leaves RocksDB read-only,
  // and the next write's recovery is where Debian's RocksDB 7.8 asserts.
  GSAU_RETURN_IF_ERROR(CheckWritable("take a checkpoint"));
  GSAU_RETURN_IF_ERROR(CheckFreeSpace(options_.min_free_disk_bytes, "not taking a checkpoint until space returns"));
  // The flush first, while batches go on (RocksDB flushes beside writers; Close runs alone, see
  // the header): inside the lock below it held ingest's writes for as long as full memtables took
  // to reach the disk.
  GSAU_RETURN_IF_ERROR(Flush());
  // The writer's lock: no batch is being written, so the checkpoint holds exactly batch seq_
  // (readers go on). With a WAL, what came in since the flush goes into the checkpoint as a copy
  // of the WAL rather than as a second flush inside the lock (as long as the first one's intake
  // took to write); without a WAL it must be flushed.
  std::lock_guard write_lock(write_mu_);
  GSAU_RETURN_IF_ERROR(CheckOpenLocked());
  rocksdb::Checkpoint* raw = nullptr;
  GSAU_RETURN_IF_ERROR(FromRocks(rocksdb::Checkpoint::Create(db_.get(), &raw), "state: checkpoint"));
  std::unique_ptr<rocksdb::Checkpoint> cp(raw);
  const uint64_t log_size_for_flush = options_.wal ? std::numeric_limits<uint64_t>::max() : 0;
  GSAU_RETURN_IF_ERROR(FromRocks(cp->CreateCheckpoint(dir, log_size_for_flush), "state: checkpoint to " + dir));
  return seq_;
}

Status StateStore::Impl::Flush() const {
  if (!db_) return Status::Aborted("state: store is closed");
  GSAU_RETURN_IF_ERROR(CheckWritable("flush"));
  rocksdb::FlushOptions fo;
  fo.wait = true;
  return FromRocks(db_->Flush(fo, cfs_), "state: flush");
}

Status StateStore::Impl::Compact() {
  if (!db_) return Status::Aborted("state: store is closed");
  GSAU_RETURN_IF_ERROR(CheckWritable("compact"));
  rocksdb::CompactRangeOptions co;
  co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  for (auto* h : cfs_) {
    GSAU_RETURN_IF_ERROR(FromRocks(db_->CompactRange(co, h, nullptr, nullptr), "state: compact"));
  }
  return Status::Ok();
}

Result<uint64_t> StateStore::Impl::DiskBytes() const {
  std::shared_lock lock(mu_);
  GSAU_RETURN_IF_ERROR(CheckOpenLocked());
  std::vector<rocksdb::LiveFileMetaData> files;
  db_->GetLiveFilesMetaData(&files);
  uint64_t total = 0;
  for (const auto& f : files) total += f.size;
  rocksdb::VectorLogPtr wals;
  GSAU_RETURN_IF_ERROR(FromRocks(db_->GetSortedWalFiles(wals), "state: list WAL files"));
  for (const auto& w : wals) total += w->SizeFileBytes();
  return total;
}

// StateStore: the public face forwards to Impl.

StateStore::StateStore(const StateOptions& options, std::unique_ptr<Impl> impl)
    : options_(options), impl_(std::move(impl)) {}

StateStore::~StateStore() {
  Status s = Close();
  if (!s.ok()) GSAU_LOG_ERROR("state: close failed: {}", s.ToString());
}

Result<std::unique_ptr<StateStore>> StateStore::Open(const StateOptions& options) {
  // A read-only open of a store that a pipeline is writing reads the manifest, then opens the
  // files it names (all of them: max_open_files -1, so that later reads survive their deletion);
  // a compaction that finishes in between deletes one of them, and the open fails with "No such
  // file" as a Corruption or IO error, though the store is sound. Such an open is tried again
  // with the newer manifest.
  constexpr int kReadOnlyTries = 10;
  for (int attempt = 1;; ++attempt) {
    auto impl = std::make_unique<Impl>(options);
    Status s = impl->OpenDb();
    if (s.ok()) return std::unique_ptr<StateStore>(new StateStore(options, std::move(impl)));
    // RocksDB's words for a file it was told of and could not open (ENOENT), whatever status
    // wraps them; other errors (permissions, the caches' own checks) are not retried.
    const bool moved = s.message().find("No such file or directory") != std::string::npos &&
                       s.message().find("no store at") == std::string::npos;
    // The loaded view failed the store's own checks ("item ids are not dense", seen once beside
    // a writer flushing and compacting every few ms): a view of a store being written, taken
    // across its changes, is tried again too; a store that is damaged fails every try.
    const bool torn = s.code() == StatusCode::kCorruption;
    if (!options.read_only || !(moved || torn)) return s;
    if (attempt == kReadOnlyTries) {
      return Status(s.code(), s.message() + " (read-only open tried " + std::to_string(kReadOnlyTries) +
                                  " times: if a pipeline is writing the store, its files may have moved each time)");
    }
    GSAU_LOG_DEBUG("state: read-only open of {} failed ({}); trying again", options.path, s.ToString());
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(10 << attempt, 200)));
  }
}

namespace {

// The store's folder as one name: "state/" is the folder "state".
fs::path FolderPath(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  return p.has_filename() ? p : p.parent_path();
}

class RocksHold final : public StateStore::Hold {
 public:
  explicit RocksHold(rocksdb::FileLock* lock) : lock_(lock) {}
  ~RocksHold() override {
    const rocksdb::Status s = rocksdb::Env::Default()->UnlockFile(lock_);
    if (!s.ok()) GSAU_LOG_ERROR("state: releasing a hold: {}", s.ToString());
  }

 private:
  rocksdb::FileLock* lock_;
};

}  // namespace

Result<std::unique_ptr<StateStore::Hold>> StateStore::HoldExclusive(const std::string& path) {
  std::error_code ec;
  // Any directory there, even one without CURRENT (a store being created, a copy cut short).
  if (!fs::is_directory(path, ec)) return std::unique_ptr<Hold>();
  // RocksDB's own lock: the same file and calls a writable Open makes (fcntl between processes,
  // a set of held names within one).
  rocksdb::FileLock* lock = nullptr;
  const rocksdb::Status s = rocksdb::Env::Default()->LockFile(path + "/LOCK", &lock);
  if (!s.ok()) {
    return Status::Unavailable("state: " + path + " is in use by a running store (" + s.ToString() + ")");
  }
  return std::unique_ptr<Hold>(new RocksHold(lock));
}

std::string StateStore::RestoringPath(const std::string& path) { return FolderPath(path).string() + ".restoring"; }

Result<std::unique_ptr<StateStore>> StateStore::OpenFromCheckpoint(const std::string& checkpoint_dir,
                                                                   const StateOptions& options) {
  GSAU_RETURN_IF_ERROR(options.Validate());
  std::error_code ec;
  if (!fs::exists(fs::path(checkpoint_dir) / "CURRENT", ec)) {
    return Status::NotFound("state: no checkpoint at " + checkpoint_dir);
  }
  if (fs::exists(options.path, ec) && !fs::is_empty(options.path, ec)) {
    return Status::InvalidArgument("state: restore target " + options.path + " is not empty");
  }
  // Copied beside the target and renamed into place once whole and on disk: a copy cut short
  // (a kill, a full disk) at the target itself opened as a store, and with a WAL its SST files
  // alone are not whole batches (the copied log completes them), so it opened torn.
  const fs::path target = FolderPath(options.path), tmp = RestoringPath(options.path);
  fs::remove_all(tmp, ec);  // an earlier restore's, cut short
  if (ec) return Status::IoError("state: removing " + tmp.string() + ": " + ec.message());
  const auto fail = [&](const std::string& what) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    return Status::IoError("state: " + what);
  };
  fs::create_directories(tmp, ec);
  if (!ec) fs::copy(checkpoint_dir, tmp, fs::copy_options::recursive, ec);
  if (ec) return fail("copy checkpoint " + checkpoint_dir + " to " + tmp.string() + ": " + ec.message());
  // The copy is the store from now on (a rollback then deletes what would redo it): on disk
  // before it is used, files first, then the folders that name them.
  std::vector<std::string> dirs{tmp.string()};
  for (auto it = fs::recursive_directory_iterator(tmp, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_directory()) {
      dirs.push_back(it->path().string());
    } else if (Status s = SyncPath(it->path().string()); !s.ok()) {
      return fail(s.message());
    }
  }
  if (ec) return fail("listing the restored " + tmp.string() + ": " + ec.message());
  for (auto d = dirs.rbegin(); d != dirs.rend(); ++d) {
    if (Status s = SyncPath(*d); !s.ok()) return fail(s.message());
  }
  fs::rename(tmp, target, ec);  // over an empty folder too
  if (ec) return fail("moving " + tmp.string() + " to " + target.string() + ": " + ec.message());
  GSAU_RETURN_IF_ERROR(SyncPath(fs::absolute(target).parent_path().string()));
  StateOptions o = options;
  o.create_if_missing = false;
  return Open(o);
}

Status StateStore::Close() { return impl_->CloseDb(); }

Result<BatchResult> StateStore::ApplyBatch(std::span<const ClickEvent> events,
                                           std::span<const PartitionOffset> offsets) {
  return impl_->Apply(events, offsets);
}

Result<std::vector<SessionEntry>> StateStore::Session(UserId user) const { return impl_->Session(user); }
Result<std::vector<Edge>> StateStore::UserNeighbours(UserId user) const { return impl_->UserNeighbours(user); }
Result<std::vector<Edge>> StateStore::ItemNeighbours(ItemId item) const { return impl_->ItemNeighbours(item); }
NodeStats StateStore::UserStats(UserId user) const { return impl_->UserStats(user); }
NodeStats StateStore::ItemStats(ItemId item) const { return impl_->ItemStats(item); }
StateCounts StateStore::Counts() const { return impl_->Counts(); }
uint64_t StateStore::BatchSeq() const { return impl_->Counts().batch_seq; }
std::vector<PartitionOffset> StateStore::Offsets() const { return impl_->Offsets(); }
std::optional<int64_t> StateStore::Offset(const TopicPartition& tp) const { return impl_->Offset(tp); }
std::optional<PartitionOffset> StateStore::LastRecord(const TopicPartition& tp) const {
  return impl_->LastRecord(tp);
}
std::optional<UserId> StateStore::FindUser(std::string_view ext) const {
  return impl_->Find(impl_->user_ids(), ext);
}
std::optional<ItemId> StateStore::FindItem(std::string_view ext) const {
  return impl_->Find(impl_->item_ids(), ext);
}
Result<std::string> StateStore::UserExternalId(UserId user) const {
  return impl_->Name(impl_->user_names(), user, "user");
}
Result<std::string> StateStore::ItemExternalId(ItemId item) const {
  return impl_->Name(impl_->item_names(), item, "item");
}
Result<ChangeSet> StateStore::ChangesSince(uint64_t from_seq) const { return impl_->ChangesSince(from_seq); }
uint64_t StateStore::OldestChangeSeq() const { return impl_->OldestChangeSeq(); }
Result<StateCounts> StateStore::ForEachEdge(const std::function<void(const Edge&)>& fn) const {
  return impl_->ForEachEdge(fn);
}
Result<StateCounts> StateStore::ForEachSession(
    const std::function<void(UserId, std::span<const SessionEntry>)>& fn) const {
  return impl_->ForEachSession(fn);
}
Result<uint64_t> StateStore::CreateCheckpoint(const std::string& dir) const {
  return impl_->CreateCheckpoint(dir);
}
Status StateStore::Flush() { return impl_->Flush(); }
Status StateStore::Compact() { return impl_->Compact(); }
Result<uint64_t> StateStore::DiskBytes() const { return impl_->DiskBytes(); }

}  // namespace gsau::state
