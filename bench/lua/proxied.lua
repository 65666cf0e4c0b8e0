-- Scenario "proxied": every request as a load balancer forwards it: the client's address and
-- scheme in X-Forwarded-For / X-Forwarded-Proto, the balancer (10.0.0.1) trusted.
wrk.headers["X-Forwarded-For"] = "203.0.113.7, 10.0.0.1"
wrk.headers["X-Forwarded-Proto"] = "https"
