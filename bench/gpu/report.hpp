// What one bench process found: correctness checks (relative L2 against the CPU kernel, or "every
// element written" on the large problems), timings with their achieved rate and ratio to a ceiling,
// the targets, and errors. Printed as tables and written as one JSON line per process.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "host_data.hpp"
#include "timing.hpp"

namespace gpubench {

struct CheckRow {
  std::string section, name, dtype, output;
  double rel_err = 0, bound = 0;
  int64_t non_finite = 0, count = 0;
  bool pass = false;
};

struct TimeRow {
  std::string section, name, shape, dtype;
  Timing time;
  std::string unit;        // "TFLOP/s" or "GB/s"
  double value = 0;        // achieved, by the count in `counted`
  std::string ceiling;     // "gemm" or "copy"
  double ratio = 0;        // value / ceiling (0 when the ceiling is unknown)
  std::string counted;     // how the FLOPs or bytes were counted
  std::string flag;        // e.g. a rate above the ceiling, which means a timing or counting error
  bool emulated = false;   // timed on the CPU emulator: host time, no ratio, not a GPU result
};

struct TargetRow {
  std::string name, goal;
  double ratio = 0, threshold = 0;
  bool met = false;
};

class Report {
 public:
  // Adds a check; passes when the comparison is within `bound` and nothing was left unwritten.
  bool check(const std::string& section, const std::string& name, forge_dtype dtype, const std::string& output,
             const Comparison& cmp, double bound);
  void time(TimeRow row) { times_.push_back(std::move(row)); }
  void target(TargetRow row) { targets_.push_back(std::move(row)); }
  void error(const std::string& section, const std::string& what);
  void note(const std::string& text) { notes_.push_back(text); }

  bool failed() const;
  const std::vector<TimeRow>& times() const { return times_; }

  void print(FILE* out) const;
  // One JSON object (no trailing newline); `header` holds the run's fields, already JSON ("k":v,...).
  std::string json(const std::string& header) const;

 private:
  std::vector<CheckRow> checks_;
  std::vector<TimeRow> times_;
  std::vector<TargetRow> targets_;
  std::vector<std::string> errors_, notes_;
};

// JSON pieces for the header.
std::string json_string(const std::string& s);
std::string json_number(double v);

}  // namespace gpubench
