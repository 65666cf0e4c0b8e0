#include "core/log.hpp"

#include <cstdio>

namespace coachwhip::core {
namespace {
log_sink g_sink = nullptr;  // one engine per process; set once at start-up by the bridge
void* g_ctx = nullptr;
log_level g_min = log_level::info;
}  // namespace

void set_log_sink(log_sink sink, void* ctx, log_level min_level) noexcept {
    g_sink = sink;
    g_ctx = ctx;
    g_min = min_level;
}

bool log_enabled(log_level level) noexcept { return level >= g_min; }

void log(log_level level, std::string_view message) noexcept {
    if (!log_enabled(level)) return;
    if (g_sink) {
        g_sink(level, message, g_ctx);
    } else if (level >= log_level::warning) {
        std::fprintf(stderr, "coachwhip: %.*s\n", static_cast<int>(message.size()), message.data());
    }
}

}  // namespace coachwhip::core
