// ProgressBar: progress of a long job with its rate and ETA.
//
// On a terminal it redraws one line (at most 5 times a second); otherwise (logs, CI) it
// writes a whole line every `line_interval_s` seconds, so progress is visible in both.
// The caller passes the units ("events", "samples") and may attach a free-form suffix
// (loss terms, say) to each update.
//
// Thread safety: not thread-safe; update it from one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace gsau {

struct ProgressOptions {
  std::string label;             // shown first, e.g. "replay" or "epoch 3/300"
  std::string unit = "items";    // what is counted, shown with the rate
  double line_interval_s = 10.0; // seconds between lines when not on a terminal
  FILE* out = stderr;            // not owned
  bool force_plain = false;      // always write whole lines (tests)
};

class ProgressBar {
 public:
  // `total` <= 0 means unknown: no percentage or ETA is shown.
  ProgressBar(int64_t total, ProgressOptions options);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Sets the count done so far and redraws when it is time to.
  void Update(int64_t done, const std::string& suffix = "");
  // Draws the final state (`done`, or the last count when negative) and ends the line.
  // Called by the destructor if not before.
  void Finish(const std::string& suffix = "", int64_t done = -1);

  double ElapsedSeconds() const;
  // Items per second since the start.
  double Rate() const;

  // Renders one status line (no trailing newline); exposed for tests.
  std::string Render(const std::string& suffix) const;

 private:
  void Draw(const std::string& suffix, bool final);

  int64_t total_;
  int64_t done_ = 0;
  ProgressOptions options_;
  bool tty_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

// "1h02m", "3m05s", "42s".
std::string FormatDuration(double seconds);

// `line` cut to fit `columns - 1` terminal columns (whole UTF-8 characters, one column each);
// unchanged when `columns` <= 0 (width unknown). A redrawn line that wraps leaves its first rows
// behind: "\r\033[K" clears only the row the cursor is on.
std::string FitToColumns(std::string line, int columns);

}  // namespace gsau
