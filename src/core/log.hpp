// coachwhip::core logging primitive.
//
// The engine does not own a logging framework: the Python side installs one sink (which forwards
// to Python's `logging`), and tests may install their own. Messages are formatted by the caller.
// Contract: `log()` may be called from the engine thread only; the sink is called synchronously
// and must not call back into the engine. When no sink is installed, messages at warning and
// above go to stderr.
#pragma once

#include <string_view>

namespace coachwhip::core {

enum class log_level : int { trace = 5, debug = 10, info = 20, warning = 30, error = 40 };

using log_sink = void (*)(log_level, std::string_view message, void* ctx);

void set_log_sink(log_sink sink, void* ctx, log_level min_level) noexcept;
bool log_enabled(log_level level) noexcept;
void log(log_level level, std::string_view message) noexcept;

}  // namespace coachwhip::core
