#include "report.hpp"

#include <cmath>
#include <sstream>

namespace gpubench {

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else if (static_cast<unsigned char>(c) < 0x20) out += ' ';
    else out += c;
  }
  return out + "\"";
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";  // JSON has no NaN or Inf
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

bool Report::check(const std::string& section, const std::string& name, forge_dtype dtype, const std::string& output,
                   const Comparison& cmp, double bound) {
  CheckRow row;
  row.section = section;
  row.name = name;
  row.dtype = dtype_name(dtype);
  row.output = output;
  row.rel_err = cmp.rel_err;
  row.bound = bound;
  row.non_finite = cmp.non_finite;
  row.count = cmp.count;
  row.pass = cmp.within(bound);
  checks_.push_back(row);
  return row.pass;
}

void Report::error(const std::string& section, const std::string& what) {
  errors_.push_back(section + ": " + what);
  std::fprintf(stderr, "[gpu-bench] ERROR %s: %s\n", section.c_str(), what.c_str());
}

bool Report::failed() const {
  if (!errors_.empty()) return true;
  for (const CheckRow& c : checks_)
    if (!c.pass) return true;
  return false;
}

void Report::print(FILE* out) const {
  if (!checks_.empty()) {
    std::fprintf(out, "\n  %-44s %-5s %-8s %10s %8s %10s  %s\n", "correctness check", "dtype", "output", "rel err",
                 "bound", "unwritten", "result");
    for (const CheckRow& c : checks_)
      std::fprintf(out, "  %-44s %-5s %-8s %10.3g %8.0e %10lld  %s\n", c.name.c_str(), c.dtype.c_str(),
                   c.output.c_str(), c.rel_err, c.bound, static_cast<long long>(c.non_finite),
                   c.pass ? "ok" : "FAIL");
  }
  if (!times_.empty()) {
    if (times_.front().emulated)
      std::fprintf(out, "\n  TIMED ON THE CPU EMULATOR: host time, not a GPU result; no ratios (emu)");
    std::fprintf(out, "\n  %-44s %-5s %9s %9s %-8s %6s  %s\n", "timing (median)", "dtype", "ms", "rate", "unit",
                 "ratio", "counted");
    for (const TimeRow& t : times_) {
      char ratio[16];
      if (t.emulated) std::snprintf(ratio, sizeof ratio, "%6s", "emu");
      else std::snprintf(ratio, sizeof ratio, "%5.0f%%", 100 * t.ratio);
      std::fprintf(out, "  %-44s %-5s %9.4g %9.4g %-8s %s  %s%s%s\n", (t.name + " " + t.shape).c_str(),
                   t.dtype.c_str(), t.time.median_ms, t.value, t.unit.c_str(), ratio, t.counted.c_str(),
                   t.flag.empty() ? "" : "  !! ", t.flag.c_str());
    }
  }
  for (const TargetRow& t : targets_)
    std::fprintf(out, "\n  target %s: %s -> %.0f%% (%s)\n", t.name.c_str(), t.goal.c_str(), 100 * t.ratio,
                 t.met ? "met" : "NOT met");
  for (const std::string& n : notes_) std::fprintf(out, "  note: %s\n", n.c_str());
  for (const std::string& e : errors_) std::fprintf(out, "  ERROR: %s\n", e.c_str());
}

std::string Report::json(const std::string& header) const {
  std::ostringstream o;
  o << "{" << header << ",\"checks\":[";
  for (size_t i = 0; i < checks_.size(); ++i) {
    const CheckRow& c = checks_[i];
    o << (i ? "," : "") << "{\"section\":" << json_string(c.section) << ",\"name\":" << json_string(c.name)
      << ",\"dtype\":" << json_string(c.dtype) << ",\"output\":" << json_string(c.output)
      << ",\"rel_err\":" << json_number(c.rel_err) << ",\"bound\":" << json_number(c.bound)
      << ",\"unwritten_or_non_finite\":" << c.non_finite << ",\"elements\":" << c.count
      << ",\"pass\":" << (c.pass ? "true" : "false") << "}";
  }
  o << "],\"timings\":[";
  for (size_t i = 0; i < times_.size(); ++i) {
    const TimeRow& t = times_[i];
    o << (i ? "," : "") << "{\"section\":" << json_string(t.section) << ",\"name\":" << json_string(t.name)
      << ",\"shape\":" << json_string(t.shape) << ",\"dtype\":" << json_string(t.dtype)
      << ",\"median_ms\":" << json_number(t.time.median_ms) << ",\"min_ms\":" << json_number(t.time.min_ms)
      << ",\"max_ms\":" << json_number(t.time.max_ms) << ",\"reps\":" << t.time.reps
      << ",\"unit\":" << json_string(t.unit) << ",\"value\":" << json_number(t.value)
      << ",\"ceiling\":" << json_string(t.ceiling) << ",\"ratio\":" << json_number(t.ratio)
      << ",\"counted\":" << json_string(t.counted) << ",\"flag\":" << json_string(t.flag)
      << ",\"emulated\":" << (t.emulated ? "true" : "false") << "}";
  }
  o << "],\"targets\":[";
  for (size_t i = 0; i < targets_.size(); ++i) {
    const TargetRow& t = targets_[i];
    o << (i ? "," : "") << "{\"name\":" << json_string(t.name) << ",\"goal\":" << json_string(t.goal)
      << ",\"ratio\":" << json_number(t.ratio) << ",\"threshold\":" << json_number(t.threshold)
      << ",\"met\":" << (t.met ? "true" : "false") << "}";
  }
  o << "],\"notes\":[";
  for (size_t i = 0; i < notes_.size(); ++i) o << (i ? "," : "") << json_string(notes_[i]);
  o << "],\"errors\":[";
  for (size_t i = 0; i < errors_.size(); ++i) o << (i ? "," : "") << json_string(errors_[i]);
  o << "],\"failed\":" << (failed() ? "true" : "false") << "}";
  return o.str();
}

}  // namespace gpubench
