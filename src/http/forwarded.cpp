#include "http/forwarded.hpp"

#include <string>
#include <vector>

#include "core/log.hpp"

namespace coachwhip::http {

namespace {

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        unsigned char x = static_cast<unsigned char>(a[i]);
        if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + 32);
        if (x != static_cast<unsigned char>(b[i])) return false;
    }
    return true;
}

}  // namespace

bool trusts_peer(const endpoint& client, const endpoint& server,
                 const proxy::trusted_networks& trust) noexcept {
    const bool unix_peer = server.known && server.port < 0;  // AF_UNIX (see http::endpoint)
    return unix_peer ? trust.contains_unix() : client.known && trust.contains(client.host);
}

void apply_forwarded(exchange& ex, const endpoint& client, const endpoint& server,
                     const proxy::trusted_networks& trust) {
    static thread_local std::vector<std::string_view> xff, xfp, fwd;
    xff.clear(), xfp.clear(), fwd.clear();
    for (const field& f : ex.headers) {
        switch (f.name.size()) {
            case 9:
                if (iequals(f.name, "forwarded")) fwd.push_back(f.value);
                break;
            case 15:
                if (iequals(f.name, "x-forwarded-for")) xff.push_back(f.value);
                break;
            case 17:
                if (iequals(f.name, "x-forwarded-proto")) xfp.push_back(f.value);
                break;
            default: break;
        }
    }
    if (xff.empty() && xfp.empty() && fwd.empty()) return;
    const proxy::peer_address peer{client.host, server.known && server.port < 0};
    const proxy::forwarded_result r = proxy::resolve_forwarded(peer, {xff, xfp, fwd}, trust);
    if (r.client == proxy::client_source::header) {
        ex.client = {std::string(r.host.view()), r.port, true};
    } else if (r.client == proxy::client_source::unknown) {
        ex.client = {};  // ASGI: client None (forwarded.hpp: never the proxy's own address)
    }
    if (!r.scheme.empty()) ex.scheme = r.scheme;
    if (!r.problem.empty() && core::log_enabled(core::log_level::debug))
        core::log(core::log_level::debug,
                  "proxy headers from " + client.host + " ignored: " + std::string(r.problem));
}

}  // namespace coachwhip::http
