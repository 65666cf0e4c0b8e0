-- Scenario "upload": every request is a POST with a 16 KiB body (wrk adds Content-Length).
wrk.method = "POST"
wrk.body = string.rep("x", 16384)
wrk.headers["Content-Type"] = "application/octet-stream"
