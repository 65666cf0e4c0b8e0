// coachwhip::bridge — the access line both bridges log for a response (uvicorn's format):
//   127.0.0.1:51724 - "GET /path HTTP/1.1" 200
#pragma once

#include <string>

#include "http/exchange.hpp"

namespace coachwhip::bridge {

// Everything but the status: `client - "METHOD target HTTP/x.y" `. An IPv6 client gets brackets
// before its port, so the line stays parseable. The parser admits only visible ASCII in the
// method and target, so the line is ASCII.
inline std::string access_prefix(const http::exchange& ex) {
    std::string line;
    line.reserve(96 + ex.target.size());
    if (ex.client.known) {
        const bool v6 = ex.client.port >= 0 && ex.client.host.find(':') != std::string::npos;
        line.append(v6 ? "[" : "").append(ex.client.host).append(v6 ? "]" : "");
        if (ex.client.port >= 0) line.append(":").append(std::to_string(ex.client.port));
    } else {
        line.append("-");
    }
    line.append(" - \"").append(ex.method).append(" ").append(ex.target);
    line.append(" HTTP/").append(ex.http_version).append("\" ");
    return line;
}

}  // namespace coachwhip::bridge
