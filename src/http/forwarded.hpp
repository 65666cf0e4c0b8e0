// coachwhip::http — proxy headers applied to an exchange, whatever the protocol carried it.
//
// Contract: `peer_trusted` says whether the connection's peer is one of --forwarded-allow-ips
// (judge it once per connection with `trusts_peer`). For a trusted peer, the client and scheme
// that X-Forwarded-For, X-Forwarded-Proto and Forwarded name (proxy::resolve_forwarded's rules)
// replace the socket's in `ex`; an untrusted peer's fields change nothing. Pure: no I/O.
#pragma once

#include "http/exchange.hpp"
#include "proxy/forwarded.hpp"

namespace coachwhip::http {

// The peer is trusted: an AF_UNIX peer (server.port < 0) when the list names "unix:", an IP
// peer when its address is in the list.
bool trusts_peer(const endpoint& client, const endpoint& server,
                 const proxy::trusted_networks& trust) noexcept;

// Applies the request's proxy headers from a trusted `client` (see above). `server`: our end.
void apply_forwarded(exchange& ex, const endpoint& client, const endpoint& server,
                     const proxy::trusted_networks& trust);

}  // namespace coachwhip::http
