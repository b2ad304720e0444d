// RocksDB options for the state store's column families (see keys.h for what each holds).
// Private to state/ (and its white-box benchmark, which opens a bare database with the very
// same options as its ceiling).
#pragma once

#include <memory>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include "gsau/state/state_options.h"

namespace gsau::state {

struct DbSetup {
  rocksdb::DBOptions db;
  std::vector<rocksdb::ColumnFamilyDescriptor> families;  // in keys::Cf order
  rocksdb::WriteOptions write;
};

DbSetup MakeDbSetup(const StateOptions& options);

}  // namespace gsau::state
