// TempDir: a fresh directory under $TMPDIR, removed with everything in it on destruction
// (kept when GSAU_TEST_KEEP_DIRS=1, to look at a test's logs and state afterwards).
#pragma once

#include <filesystem>
#include <string>

namespace gsau::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "gsau-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // path() / name, as a string.
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Writes `content` to `path`, replacing it. Throws on failure (tests only).
void WriteFile(const std::string& path, const std::string& content);

// The repository root (GSAU_SOURCE_DIR, set by CTest) and the build directory.
std::string SourceDir();
std::string BinaryDir();

}  // namespace gsau::testing
