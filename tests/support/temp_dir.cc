#include "temp_dir.h"

#include <cstdlib>
#include <fstream>
#include <random>
#include <stdexcept>

namespace gsau::testing {

TempDir::TempDir(const std::string& prefix) {
  std::random_device rd;
  const auto base = std::filesystem::temp_directory_path();
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto candidate = base / (prefix + "-" + std::to_string(rd()));
    if (std::filesystem::create_directory(candidate)) {
      path_ = candidate;
      return;
    }
  }
  throw std::runtime_error("TempDir: cannot create a directory under " + base.string());
}

TempDir::~TempDir() {
  if (const char* keep = std::getenv("GSAU_TEST_KEEP_DIRS"); keep != nullptr && *keep == '1') return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  if (!out) throw std::runtime_error("WriteFile: cannot write " + path);
}

std::string SourceDir() {
  const char* s = std::getenv("GSAU_SOURCE_DIR");
  return s != nullptr ? s : GSAU_DEFAULT_SOURCE_DIR;
}

std::string BinaryDir() {
  const char* s = std::getenv("GSAU_BINARY_DIR");
  return s != nullptr ? s : GSAU_DEFAULT_BINARY_DIR;
}

}  // namespace gsau::testing
