// Time behind an interface, so that tests can use a fake clock.
#pragma once

#include <cstdint>
#include <string>

namespace rota {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch (wall clock: timestamps, run_after).
  virtual int64_t now_ms() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t now_ms() const override;
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_ms) : now_(start_ms) {}
  int64_t now_ms() const override { return now_; }
  void advance(int64_t ms) { now_ += ms; }

 private:
  int64_t now_;
};

// The wall clock now, in Unix milliseconds (for code that has no Clock to hand).
int64_t wall_now_ms();

// RFC 3339 UTC with milliseconds: 2026-11-23T07:50:52.123Z.
std::string format_timestamp(int64_t ms);

}  // namespace rota
